#!/usr/bin/env python3
"""Generates the parity fixtures the tests compare against, by running the Python reference
(PyTorch, transformers, tokenizers). Output goes to test/fixtures/gen/ (git-ignored); a stamp of this
script's hash and the reference versions skips regeneration when nothing changed.
Usage: python3 scripts/fixtures.py [--force] [section ...]"""
import hashlib
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, 'test', 'fixtures', 'gen')
DATA = os.environ.get('TORCHBERT_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
SECTIONS = {}


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


def main(argv):
    force = '--force' in argv
    wanted = [a for a in argv if not a.startswith('--')] or list(SECTIONS)
    os.makedirs(OUT, exist_ok=True)
    import importlib.metadata as md
    versions = {p: md.version(p) for p in ('torch', 'transformers', 'tokenizers', 'safetensors')}
    with open(__file__, 'rb') as f:
        digest = hashlib.sha256(f.read() + json.dumps(versions).encode()).hexdigest()
    for name in wanted:
        stamp = os.path.join(OUT, f'.{name}.stamp')
        if not force and os.path.exists(stamp) and open(stamp).read() == digest:
            continue
        print(f'fixtures: generating {name}', flush=True)
        SECTIONS[name]()
        with open(stamp, 'w') as f:
            f.write(digest)


if __name__ == '__main__':
    main(sys.argv[1:])
