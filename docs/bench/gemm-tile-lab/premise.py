import torch, time
torch.backends.cuda.matmul.allow_bf16_reduced_precision_reduction = False
dev = 'cuda'
shapes = [(1024,7168,1792),(1024,1792,3584),(1024,5376,1792),(1024,1792,1792),(512,7168,1792),(512,1792,3584),(2048,7168,1792),(15360,7168,1792),(128,7168,1792)]
flush = torch.empty(256*1024*1024//4, device=dev)
for (M,N,K) in shapes:
    x = torch.randn(M,K,device=dev,dtype=torch.bfloat16)
    w = torch.randn(N,K,device=dev,dtype=torch.bfloat16)
    for _ in range(5): y = x @ w.t()
    torch.cuda.synchronize()
    res = {}
    for cold in (False, True):
        ts=[]
        for r in range(30):
            if cold: flush.zero_()
            s=torch.cuda.Event(enable_timing=True); e=torch.cuda.Event(enable_timing=True)
            s.record(); y = x @ w.t(); e.record(); e.synchronize()
            ts.append(s.elapsed_time(e)*1000)
        ts.sort(); res[cold]=ts[len(ts)//2]
    fl = 2*M*N*K
    print(f"M {M:6d} N {N:5d} K {K:5d}: warm {res[False]:8.2f} us ({fl/res[False]/1e6:6.1f} TF/s), cold {res[True]:8.2f} us ({fl/res[True]/1e6:6.1f} TF/s)")
