# What an ISA cap in the environment does to bf16 on a CPU with bf16 units: one bert-base intermediate
# GEMM (1024 rows x 768 -> 3072) in bf16 and in fp32 through libtorch, 2 threads, ms per call (mean of 20
# after 3 warm-up calls). torchbert's cpuInfo().bf16 turns false under a cap that hides the units, so bf16
# is refused instead of run at these speeds.
# Usage: for c in '' AVX512_CORE_VNNI AVX2; do ONEDNN_MAX_CPU_ISA=$c python3 bench/bf16-cap.py; done
import os, time, torch

torch.set_num_threads(2)
torch.manual_seed(0)
a = torch.randn(1024, 768).bfloat16()
w = torch.randn(3072, 768).bfloat16()
af, wf = a.float(), w.float()


def ms(f, n=20):
    for _ in range(3):
        f()
    t0 = time.perf_counter()
    for _ in range(n):
        f()
    return (time.perf_counter() - t0) / n * 1000


bf = ms(lambda: torch.nn.functional.linear(a, w))
fp = ms(lambda: torch.nn.functional.linear(af, wf))
cap = os.environ.get('ONEDNN_MAX_CPU_ISA') or '(none)'
print(f'ONEDNN_MAX_CPU_ISA={cap}: bf16 {bf:.1f} ms, fp32 {fp:.1f} ms, bf16/fp32 {bf / fp:.2f}')
