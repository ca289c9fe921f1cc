# The cost of a second OpenMP team, in PyTorch alone (no torchbert): a bert-base forward at one short
# sentence, timed in a process where only the main thread has run torch ops, then after one more thread
# has run a forward and stays alive (as a libuv pool thread that ran one would). GNU OpenMP keeps a team
# per such thread; with more OpenMP threads than CPUs it stops spinning between parallel regions.
# Usage: python3 bench/omp_teams.py [model dir] [--threads N]   (each case runs in a fresh process)
import json, os, subprocess, sys, threading, time, warnings

CASE = os.environ.get('OMP_TEAMS_CASE')
MODEL = next((a for a in sys.argv[1:] if not a.startswith('--')), os.path.join(os.path.dirname(__file__), '..', 'test', 'fixtures', 'gen', 'serve-base'))
THREADS = int(sys.argv[sys.argv.index('--threads') + 1]) if '--threads' in sys.argv else 2

if CASE is None:
    out = {}
    for rnd in range(3):  # alternate the cases: this VM's speed drifts
        for case in ['one team', 'two teams']:
            r = subprocess.run([sys.executable, __file__, MODEL, '--threads', str(THREADS)], env={**os.environ, 'OMP_TEAMS_CASE': case}, capture_output=True, text=True)
            if r.returncode != 0:
                sys.exit(r.stderr)
            for k, v in json.loads(r.stdout.strip().splitlines()[-1]).items():
                out.setdefault(case, {}).setdefault(k, []).append(v)
    med = {c: {k: sorted(v)[len(v) // 2] for k, v in d.items()} for c, d in out.items()}
    print(json.dumps({'threads': THREADS, 'msMedianOf3': med, 'slowdown': {k: med['two teams'][k] / med['one team'][k] for k in med['one team']}}, indent=1))
    sys.exit(0)

import torch, transformers
from torch.ao.quantization import quantize_dynamic, per_channel_dynamic_qconfig
warnings.filterwarnings('ignore')
torch.set_num_threads(THREADS)
fp = transformers.BertModel.from_pretrained(MODEL, attn_implementation='sdpa').eval()
q8 = quantize_dynamic(fp, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8)
ids = torch.randint(1000, 20000, (1, 24))
mask = torch.ones_like(ids)
release = threading.Event()
if CASE == 'two teams':
    ran = threading.Event()
    def other():
        torch.set_num_threads(THREADS)
        with torch.inference_mode():
            fp(input_ids=ids, attention_mask=mask)
        ran.set()
        release.wait()
    threading.Thread(target=other, daemon=True).start()
    ran.wait()
res = {}
with torch.inference_mode():
    for name, m in [('fp32', fp), ('int8', q8)]:
        for _ in range(5):
            m(input_ids=ids, attention_mask=mask)
        ts = []
        for _ in range(30):
            t0 = time.perf_counter()
            m(input_ids=ids, attention_mask=mask)
            ts.append((time.perf_counter() - t0) * 1000)
        res[name] = sorted(ts)[len(ts) // 2]
release.set()
print(json.dumps(res))
