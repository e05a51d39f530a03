// A standalone program, not part of based4j: a persistent product kernel out[M,N] = x[M,K] W[N,K]^T (bf16, float32
// sums) with tiles of 128 rows of x by BN outputs (a producer warpgroup's tensor copies into STAGES stages, two
// warpgroups multiplying with wgmma.m64nBNk16), and a form with clusters of 2 blocks that share each W tile (each
// copies half of it to both), timed with CUDA events against cublasGemmEx at the decode products' shapes after a
// 256 MB write (the L2 cache cold), outputs compared with cuBLAS's. docs/bench/gpu-h200.md, "A product kernel of our
// own at 1,024 rows", has what it measured on an H200. Build and run there:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o tile tile.cu -lcublas -lcuda && ./tile
// (-DLOCAL compiles it without cuBLAS, to read the kernels' registers with -Xptxas -v.) wgmma_gen.cuh holds the
// wgmma wrappers for n 96 to 256; premise.py times torch's products at the same shapes.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#ifndef LOCAL
#include <cublas_v2.h>
#else
typedef void* cublasHandle_t;
#define cublasCreate(h)
#define cublasSetStream(h,s)
#define cublasSetWorkspace(h,w,n)
#endif
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>
#include <algorithm>
#include <cmath>
#include "wgmma_gen.cuh"
#include "lab.cuh"

template <int BN> struct Mma;
template <> struct Mma<112> { static __device__ __forceinline__ void run(float (&d)[56], unsigned long long a, unsigned long long b) { wgmma_n112(d, a, b); } };
template <> struct Mma<128> { static __device__ __forceinline__ void run(float (&d)[64], unsigned long long a, unsigned long long b) { wgmma_n128(d, a, b); } };
template <> struct Mma<192> { static __device__ __forceinline__ void run(float (&d)[96], unsigned long long a, unsigned long long b) { wgmma_n192(d, a, b); } };
template <> struct Mma<224> { static __device__ __forceinline__ void run(float (&d)[112], unsigned long long a, unsigned long long b) { wgmma_n224(d, a, b); } };
template <> struct Mma<256> { static __device__ __forceinline__ void run(float (&d)[128], unsigned long long a, unsigned long long b) { wgmma_n256(d, a, b); } };

constexpr int BM = 128, KC = 64;
template <int BN> __host__ __device__ constexpr int stageBytes() { return (BM + BN) * KC * 2; }

template <int BN, int STAGES>
__global__ void __launch_bounds__(384, 1) gemmTile(const __grid_constant__ TMap tmX, const __grid_constant__ TMap tmW,
                                                   const __nv_bfloat16* bias, __nv_bfloat16* out, int M, int N, int K) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ __align__(8) unsigned long long bars[2 * STAGES];
    constexpr int SB = stageBytes<BN>();
    constexpr int XB = BM * KC * 2;
    const unsigned base = (smemAddr(smem) + 1023u) & ~1023u;
    const unsigned full = smemAddr(bars), empty = full + 8 * STAGES;
    const int tid = threadIdx.x, wg = tid >> 7;
    const int tilesM = (M + BM - 1) / BM, tilesN = N / BN, tiles = tilesM * tilesN, nk = K / KC;
    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) { barInit(full + 8 * s, 1); barInit(empty + 8 * s, 8); }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    if (wg == 0) {
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmW)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmX)) : "memory");
            // the first tile's first stages of W before the wait for the kernel before
            int pre = 0;
            if ((int)blockIdx.x < tiles) {
                const int nt = blockIdx.x / tilesM;
                pre = nk < STAGES ? nk : STAGES;
                for (int s = 0; s < pre; s++) {
                    barExpect(full + 8 * s, SB);
                    tmaLoad(base + s * SB + XB, &tmW, full + 8 * s, s * KC, nt * BN);
                }
            }
            asm volatile("griddepcontrol.wait;\n" ::: "memory");
            asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
            int it = 0;
            for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
                const int mt = t % tilesM, nt = t / tilesM;
                for (int kb = 0; kb < nk; kb++, it++) {
                    const int s = it % STAGES;
                    const unsigned sb = base + s * SB;
                    if (it < pre) {
                        tmaLoad(sb, &tmX, full + 8 * s, kb * KC, mt * BM);
                        continue;
                    }
                    if (it >= STAGES) barWait(empty + 8 * s, ((it / STAGES) & 1) ^ 1);
                    barExpect(full + 8 * s, SB);
                    tmaLoad(sb + XB, &tmW, full + 8 * s, kb * KC, nt * BN);
                    tmaLoad(sb, &tmX, full + 8 * s, kb * KC, mt * BM);
                }
            }
        } else {
            asm volatile("griddepcontrol.wait;\n" ::: "memory");
        }
        return;
    }
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    const int cw = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31;
    constexpr int R = BN / 2;
    int it = 0;
    for (int t = blockIdx.x; t < tiles; t += gridDim.x) {
        const int mt = t % tilesM, nt = t / tilesM;
        float d[R];
#pragma unroll
        for (int i = 0; i < R; i++) d[i] = 0.0f;
        for (int kb = 0; kb < nk; kb++, it++) {
            const int s = it % STAGES;
            barWait(full + 8 * s, (it / STAGES) & 1);
            const unsigned sb = base + s * SB;
            fence(d);
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < KC / 16; kk++)
                Mma<BN>::run(d, desc(sb + cw * 64 * 128 + 32 * kk), desc(sb + XB + 32 * kk));
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            fence(d);
            if (kb > 0 && lane == 0) barArrive(empty + 8 * ((it - 1) % STAGES));
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        fence(d);
        if (lane == 0) barArrive(empty + 8 * ((it - 1) % STAGES));
        const int r0 = mt * BM + cw * 64 + warp * 16 + (lane >> 2);
        const int c0 = nt * BN + 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            const int c = c0 + 8 * j;
            float b0 = 0.0f, b1 = 0.0f;
            if (bias != nullptr) { b0 = __bfloat162float(bias[c]); b1 = __bfloat162float(bias[c + 1]); }
            if (r0 < M)
                *reinterpret_cast<__nv_bfloat162*>(out + (size_t)r0 * N + c) = __floats2bfloat162_rn(d[4 * j] + b0, d[4 * j + 1] + b1);
            if (r0 + 8 < M)
                *reinterpret_cast<__nv_bfloat162*>(out + (size_t)(r0 + 8) * N + c) = __floats2bfloat162_rn(d[4 * j + 2] + b0, d[4 * j + 3] + b1);
        }
    }
}


// clusters of 2 along M: both CTAs take the same W tile, each copying half of its rows to both (multicast)
template <int BN, int STAGES>
__global__ void __cluster_dims__(2, 1, 1) __launch_bounds__(384, 1) gemmTileMc(const __grid_constant__ TMap tmX, const __grid_constant__ TMap tmW,
                                                   const __nv_bfloat16* bias, __nv_bfloat16* out, int M, int N, int K) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ __align__(8) unsigned long long bars[2 * STAGES];
    constexpr int SB = stageBytes<BN>();
    constexpr int XB = BM * KC * 2;
    constexpr int HB = (BN / 2) * KC * 2;
    const unsigned base = (smemAddr(smem) + 1023u) & ~1023u;
    const unsigned full = smemAddr(bars), empty = full + 8 * STAGES;
    const int tid = threadIdx.x, wg = tid >> 7;
    const unsigned rank = clusterRank();
    const int tilesM = (M + BM - 1) / BM, tilesN = N / BN, pairsM = (tilesM + 1) / 2, pairs = pairsM * tilesN, nk = K / KC;
    const int cl = blockIdx.x >> 1, ncl = gridDim.x >> 1;
    if (tid == 0) {
        for (int s = 0; s < STAGES; s++) { barInit(full + 8 * s, 1); barInit(empty + 8 * s, 16); }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    clusterSync();
    if (wg == 0) {
        if (tid == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmW)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmX)) : "memory");
            asm volatile("griddepcontrol.wait;\n" ::: "memory");
            asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
            int it = 0;
            for (int p = cl; p < pairs; p += ncl) {
                const int mt = 2 * (p % pairsM) + rank, nt = p / pairsM;
                for (int kb = 0; kb < nk; kb++, it++) {
                    const int s = it % STAGES;
                    const unsigned sb = base + s * SB;
                    if (it >= STAGES) barWait(empty + 8 * s, ((it / STAGES) & 1) ^ 1);
                    barExpect(full + 8 * s, SB);
                    tmaLoadMc(sb + XB + rank * HB, &tmW, full + 8 * s, kb * KC, nt * BN + rank * (BN / 2), 3);
                    tmaLoad(sb, &tmX, full + 8 * s, kb * KC, mt * BM);
                }
            }
        } else {
            asm volatile("griddepcontrol.wait;\n" ::: "memory");
        }
    } else {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    const int cw = wg - 1, warp = (tid >> 5) & 3, lane = tid & 31;
    constexpr int R = BN / 2;
    int it = 0;
    for (int p = cl; p < pairs; p += ncl) {
        const int mt = 2 * (p % pairsM) + rank, nt = p / pairsM;
        float d[R];
#pragma unroll
        for (int i = 0; i < R; i++) d[i] = 0.0f;
        for (int kb = 0; kb < nk; kb++, it++) {
            const int s = it % STAGES;
            barWait(full + 8 * s, (it / STAGES) & 1);
            const unsigned sb = base + s * SB;
            fence(d);
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int kk = 0; kk < KC / 16; kk++)
                Mma<BN>::run(d, desc(sb + cw * 64 * 128 + 32 * kk), desc(sb + XB + 32 * kk));
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            fence(d);
            if (kb > 0 && lane == 0) { barArriveCluster(empty + 8 * ((it - 1) % STAGES), 0); barArriveCluster(empty + 8 * ((it - 1) % STAGES), 1); }
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        fence(d);
        if (lane == 0) { barArriveCluster(empty + 8 * ((it - 1) % STAGES), 0); barArriveCluster(empty + 8 * ((it - 1) % STAGES), 1); }
        const int r0 = mt * BM + cw * 64 + warp * 16 + (lane >> 2);
        const int c0 = nt * BN + 2 * (lane & 3);
#pragma unroll
        for (int j = 0; j < BN / 8; j++) {
            const int c = c0 + 8 * j;
            float b0 = 0.0f, b1 = 0.0f;
            if (bias != nullptr) { b0 = __bfloat162float(bias[c]); b1 = __bfloat162float(bias[c + 1]); }
            if (r0 < M)
                *reinterpret_cast<__nv_bfloat162*>(out + (size_t)r0 * N + c) = __floats2bfloat162_rn(d[4 * j] + b0, d[4 * j + 1] + b1);
            if (r0 + 8 < M)
                *reinterpret_cast<__nv_bfloat162*>(out + (size_t)(r0 + 8) * N + c) = __floats2bfloat162_rn(d[4 * j + 2] + b0, d[4 * j + 3] + b1);
        }
    }
    }
    clusterSync();  // no CTA leaves while the other may still multicast into it or arrive on its barriers
}

template <int BN, int STAGES>
static float runMc(const TMap& mx, const TMap& mwHalf, __nv_bfloat16* out, int M, int N, int K, int sms, cudaStream_t st) {
    constexpr int smem = STAGES * stageBytes<BN>() + 1024;
    cudaFuncSetAttribute(gemmTileMc<BN, STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    int pairs = (((M + BM - 1) / BM + 1) / 2) * (N / BN);
    static int maxCl = -1;
    static const void* last = nullptr;
    if (last != (const void*)gemmTileMc<BN, STAGES>) {
        cudaLaunchConfig_t cfg = {};
        cfg.gridDim = dim3(132); cfg.blockDim = dim3(384); cfg.dynamicSmemBytes = smem;
        cudaLaunchAttribute at; at.id = cudaLaunchAttributeClusterDimension; at.val.clusterDim.x = 2; at.val.clusterDim.y = 1; at.val.clusterDim.z = 1;
        cfg.attrs = &at; cfg.numAttrs = 1;
        CK(cudaOccupancyMaxActiveClusters(&maxCl, (void*)gemmTileMc<BN, STAGES>, &cfg));
        last = (const void*)gemmTileMc<BN, STAGES>;
        printf(" [clusters %d]", maxCl);
    }
    int grid = 2 * std::min(pairs, maxCl);
    gemmTileMc<BN, STAGES><<<grid, 384, smem, st>>>(mx, mwHalf, nullptr, out, M, N, K);
    return 0;
}

template <int BN, int STAGES>
static float runOurs(const TMap& mx, const TMap& mw, const __nv_bfloat16* bias, __nv_bfloat16* out, int M, int N, int K,
                     int sms, cudaStream_t st, int grid) {
    constexpr int smem = STAGES * stageBytes<BN>() + 1024;
    cudaFuncSetAttribute(gemmTile<BN, STAGES>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    int tiles = ((M + BM - 1) / BM) * (N / BN);
    if (grid <= 0) grid = std::min(tiles, sms);
    gemmTile<BN, STAGES><<<grid, 384, smem, st>>>(mx, mw, bias, out, M, N, K);
    return 0;
}

int main(int argc, char** argv) {
    int sms; CK(cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0));
    cublasHandle_t h; cublasCreate(&h);
    cudaStream_t st; CK(cudaStreamCreate(&st)); cublasSetStream(h, st);
    void* ws; CK(cudaMalloc(&ws, 64 << 20)); cublasSetWorkspace(h, ws, 64 << 20);
    float* flush; size_t flushN = 256u << 20; CK(cudaMalloc(&flush, flushN));
    struct Shape { int M, N, K; };
    std::vector<Shape> shapes = {{1024, 7168, 1792}, {1024, 1792, 3584}, {1024, 5376, 1792}, {1024, 1792, 1792},
                                 {512, 7168, 1792}, {512, 1792, 3584}, {1000, 7168, 1792}, {2048, 7168, 1792}, {256, 7168, 1792}};
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    const int reps = 30;
    for (auto sh : shapes) {
        int M = sh.M, N = sh.N, K = sh.K;
        __nv_bfloat16 *x, *w, *o1, *o2, *bias;
        CK(cudaMalloc(&x, (size_t)M * K * 2)); CK(cudaMalloc(&w, (size_t)N * K * 2));
        CK(cudaMalloc(&o1, (size_t)M * N * 2)); CK(cudaMalloc(&o2, (size_t)M * N * 2)); CK(cudaMalloc(&bias, N * 2));
        fillRand<<<1024, 256>>>(x, (size_t)M * K, 1, 2.0f); fillRand<<<1024, 256>>>(w, (size_t)N * K, 2, 0.1f);
        fillRand<<<64, 256>>>(bias, N, 3, 1.0f);
        CK(cudaDeviceSynchronize());
        float alpha = 1, beta = 0;
        auto cub = [&]() {
#ifndef LOCAL
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w, CUDA_R_16BF, K, x, CUDA_R_16BF, K, &beta, o1,
                         CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
#endif
        };
        auto timeIt = [&](auto fn) {
            std::vector<float> ts;
            for (int r = 0; r < reps + 3; r++) {
                cudaMemsetAsync(flush, r & 0xff, flushN, st);
                cudaEventRecord(e0, st); fn(); cudaEventRecord(e1, st); cudaEventSynchronize(e1);
                float ms; cudaEventElapsedTime(&ms, e0, e1); if (r >= 3) ts.push_back(ms * 1000);
            }
            std::sort(ts.begin(), ts.end()); return ts[ts.size() / 2];
        };
        TMap mx = makeMap(x, M, K, 128);
        double fl = 2.0 * M * N * K;
        float tc = timeIt(cub);
        printf("M %5d N %5d K %5d  cublas %7.2f us (%5.0f TF/s)", M, N, K, tc, fl / tc / 1e6);
        std::vector<__nv_bfloat16> h1((size_t)M * N), h2((size_t)M * N);
        CK(cudaMemcpy(h1.data(), o1, h1.size() * 2, cudaMemcpyDeviceToHost));
        auto check = [&](const char* name, float t) {
            CK(cudaGetLastError()); CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(h2.data(), o2, h2.size() * 2, cudaMemcpyDeviceToHost));
            double maxd = 0, maxa = 0;
            for (size_t i = 0; i < h1.size(); i++) {
                double a = __bfloat162float(h1[i]), b = __bfloat162float(h2[i]);
                maxd = std::max(maxd, std::fabs(a - b)); maxa = std::max(maxa, std::fabs(a));
            }
            printf(" | %s %7.2f us (%5.0f TF/s) rel %.1e", name, t, fl / t / 1e6, maxd / maxa);
        };
        if (N % 224 == 0) {
            TMap mw = makeMap(w, N, K, 224);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            float t = timeIt([&]() { runOurs<224, 4>(mx, mw, nullptr, o2, M, N, K, sms, st, 0); });
            check("t224x4", t);
        }
        if (N % 112 == 0) {
            TMap mw = makeMap(w, N, K, 112);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            float t = timeIt([&]() { runOurs<112, 6>(mx, mw, nullptr, o2, M, N, K, sms, st, 0); });
            check("t112x6", t);
        }
        if (N % 224 == 0) {
            TMap mw = makeMap(w, N, K, 224);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            float t = timeIt([&]() { runOurs<224, 5>(mx, mw, nullptr, o2, M, N, K, sms, st, 0); });
            check("t224x5", t);
            TMap mh = makeMap(w, N, K, 112);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            t = timeIt([&]() { runMc<224, 4>(mx, mh, o2, M, N, K, sms, st); });
            check("mc224x4", t);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            t = timeIt([&]() { runMc<224, 5>(mx, mh, o2, M, N, K, sms, st); });
            check("mc224x5", t);
        }
        if (N % 256 == 0) {
            TMap mh = makeMap(w, N, K, 128);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            float t = timeIt([&]() { runMc<256, 4>(mx, mh, o2, M, N, K, sms, st); });
            check("mc256x4", t);
        }
        if (N % 112 == 0) {
            TMap mh = makeMap(w, N, K, 56);
            CK(cudaMemset(o2, 0, (size_t)M * N * 2));
            float t = timeIt([&]() { runMc<112, 7>(mx, mh, o2, M, N, K, sms, st); });
            check("mc112x7", t);
        }
        printf("\n");
        cudaFree(x); cudaFree(w); cudaFree(o1); cudaFree(o2); cudaFree(bias);
    }
    return 0;
}
