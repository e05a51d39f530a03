# A standalone script, not part of based4j: the device's read bandwidth, a kernel that streams a 24 GB buffer once
# (16-byte loads, the values folded into one word a thread) at several grids, and torch's copy (read + write); the
# best of 10 runs each, CUDA events. Needs CuPy and PyTorch. docs/bench/gpu-h200.md, "The bound of attn-1b's decode
# at 128 sequences", has what it measured on an H200.
import cupy as cp
src = r'''
extern "C" __global__ void rd(const uint4* __restrict__ p, unsigned long long n, unsigned* out) {
  unsigned acc = 0;
  for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
       i += (unsigned long long)gridDim.x * blockDim.x) {
    uint4 v = __ldcs(p + i); acc ^= v.x ^ v.y ^ v.z ^ v.w;
  }
  if (acc == 0x12345678u) out[0] = acc;
}'''
k = cp.RawKernel(src, 'rd')
nbytes = 24 * 10**9
buf = cp.ones(nbytes // 4, dtype=cp.uint32)
out = cp.zeros(1, dtype=cp.uint32)
n = nbytes // 16
sms = cp.cuda.Device().attributes['MultiProcessorCount']
best = {}
for blocks_per_sm in (2, 4, 8, 16):
    for threads in (256, 512, 1024):
        if blocks_per_sm * threads > 2048:
            continue
        grid = sms * blocks_per_sm
        k((grid,), (threads,), (buf, cp.uint64(n), out))
        cp.cuda.Device().synchronize()
        ts = []
        for _ in range(10):
            a = cp.cuda.Event(); b = cp.cuda.Event()
            a.record(); k((grid,), (threads,), (buf, cp.uint64(n), out)); b.record(); b.synchronize()
            ts.append(cp.cuda.get_elapsed_time(a, b))
        best[(blocks_per_sm, threads)] = nbytes / (min(ts) * 1e-3) / 1e12
for key, v in sorted(best.items(), key=lambda kv: -kv[1]):
    print("read: %2d blocks of %4d threads a multiprocessor: %.3f TB/s" % (key[0], key[1], v))
del buf
import torch
x = torch.empty(12 * 10**9 // 2, dtype=torch.bfloat16, device='cuda'); y = torch.empty_like(x)
x.fill_(1); y.copy_(x); torch.cuda.synchronize()
ts = []
for _ in range(10):
    a = torch.cuda.Event(enable_timing=True); b = torch.cuda.Event(enable_timing=True)
    a.record(); y.copy_(x); b.record(); b.synchronize(); ts.append(a.elapsed_time(b))
print("torch copy, read + write: %.3f TB/s" % (2 * 12e9 / (min(ts) * 1e-3) / 1e12))
