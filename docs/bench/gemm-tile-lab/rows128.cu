// A standalone program, not part of based4j: a decode step's product of 128 rows, out[M,N] = x[M,K] W[N,K]^T (bf16,
// float32 sums), with a block a tile of 64 outputs that walks its whole width (or a K-th of it, writing float32
// partial sums), W's stages asked for before the wait for the kernel before (programmatic dependent launch), and x's
// stages shared by a cluster of blocks (each copies a share of x's rows to all of them with multicast tensor copies).
// Timed with CUDA events as a CUDA graph of 20 products, each on a copy of W of its own (more than the L2 cache) and
// each behind a small kernel that writes x (as a step's norm does), less the graph of that kernel alone, against the
// same graph of cublasGemmEx's products; outputs compared with cuBLAS's. A stage is G boxes of 64 columns. Build and
// run on an H200:
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -o rows128 rows128.cu -lcublas -lcuda && ./rows128
// docs/bench/gpu-h200.md, "A product of 128 rows, a block a stripe of 64 outputs", has what it measured.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_bf16.h>
#include <cublas_v2.h>
#include <cstdio>
#include <cstdlib>
#include <vector>
#include <algorithm>
#include <cmath>
#include "wgmma_gen.cuh"
#include "lab.cuh"

constexpr int BN = 64, BM = 128, KC = 64;
constexpr int WB = BN * KC * 2, XB = BM * KC * 2, SB = WB + XB;  // a stage: W's 64 x 64, then x's 128 x 64

// One block: a producer warp (warp 4) and a warpgroup (warps 0-3) that multiplies W's 64 outputs (wgmma's A, M 64)
// by x's 128 rows (B, N 128). Block b takes output tile b % tilesN and K part b / tilesN (its kSlice columns).
// CL blocks of one cluster (adjacent output tiles, one K part) share x: each copies 128 / CL of its rows to all.
// PARTS: out is a float32 slab per K part ([part][M][N]); otherwise bf16 out (+ bias).
template <int CL, int ST, bool PARTS, bool PDL, int G = 1>
__global__ void __launch_bounds__(160, 1) rows128(const __grid_constant__ TMap tmX, const __grid_constant__ TMap tmW,
                                                  const __nv_bfloat16* bias, void* out, int M, int N, int kSlice) {
    extern __shared__ __align__(16) unsigned char smem[];
    __shared__ __align__(8) unsigned long long bars[2 * ST];
    const unsigned base = (smemAddr(smem) + 1023u) & ~1023u;
    unsigned char* gbase = smem + (base - smemAddr(smem));
    const unsigned full = smemAddr(bars), empty = full + 8 * ST;
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int tilesN = N / BN, nt = blockIdx.x % tilesN, part = blockIdx.x / tilesN;
    constexpr int GSB = G * SB;  // a stage: G boxes of 64 columns, each W's 64 x 64 then x's 128 x 64
    const int k0 = part * kSlice, nk = kSlice / (KC * G);
    const unsigned rank = CL > 1 ? clusterRank() : 0;
    if (tid == 0) {
        for (int s = 0; s < ST; s++) { barInit(full + 8 * s, 1); barInit(empty + 8 * s, 4 * CL); }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    if (CL > 1) clusterSync(); else __syncthreads();
    if (warp == 4) {
        if (lane == 0) {
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmW)) : "memory");
            asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<unsigned long long>(&tmX)) : "memory");
            const int pre = nk < ST ? nk : ST;
            // W does not depend on the kernel before: its first stages go out before the wait
            for (int s = 0; s < pre; s++) {
                barExpect(full + 8 * s, GSB);
                for (int g = 0; g < G; g++) tmaLoad(base + s * GSB + g * SB, &tmW, full + 8 * s, k0 + (s * G + g) * KC, nt * BN);
            }
            if (PDL) {
                asm volatile("griddepcontrol.wait;\n" ::: "memory");
                asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
            }
            constexpr int XR = BM / CL;
            for (int it = 0; it < nk; it++) {
                const int s = it % ST;
                const unsigned sb = base + s * GSB;
                if (it >= pre) {
                    barWait(empty + 8 * s, ((it / ST) & 1) ^ 1);
                    barExpect(full + 8 * s, GSB);
                    for (int g = 0; g < G; g++) tmaLoad(sb + g * SB, &tmW, full + 8 * s, k0 + (it * G + g) * KC, nt * BN);
                }
                for (int g = 0; g < G; g++) {
                    if (CL > 1)
                        tmaLoadMc(sb + g * SB + WB + rank * XR * 128, &tmX, full + 8 * s, k0 + (it * G + g) * KC, rank * XR, (unsigned short)((1u << CL) - 1));
                    else
                        tmaLoad(sb + g * SB + WB, &tmX, full + 8 * s, k0 + (it * G + g) * KC, 0);
                }
            }
        }
        __syncwarp();
    } else {
        float d[64];
#pragma unroll
        for (int i = 0; i < 64; i++) d[i] = 0.0f;
        for (int it = 0; it < nk; it++) {
            const int s = it % ST;
            barWait(full + 8 * s, (it / ST) & 1);
            const unsigned sb = base + s * GSB;
            fence(d);
            asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
            for (int g = 0; g < G; g++)
#pragma unroll
                for (int kk = 0; kk < KC / 16; kk++) wgmma_n128(d, desc(sb + g * SB + 32 * kk), desc(sb + g * SB + WB + 32 * kk));
            asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
            asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
            fence(d);
            if (it > 0 && lane == 0) {
                const unsigned e = empty + 8 * ((it - 1) % ST);
                if (CL > 1) { for (int c = 0; c < CL; c++) barArriveCluster(e, c); } else barArrive(e);
            }
        }
        asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
        fence(d);
        if (PDL) asm volatile("griddepcontrol.wait;\n" ::: "memory");
        // D[m][n]: m = 16 warp + lane / 4 (+ 8), n = 8 j + 2 (lane % 4) (+ 1); out[n][nt 64 + m]
        const int m0 = 16 * warp + (lane >> 2), n0 = 2 * (lane & 3);
        asm volatile("bar.sync 1, 128;\n" ::: "memory");  // every warp's last products read: the stages are free
        if (PARTS) {
            constexpr int LD = BN + 4;
            float* t = reinterpret_cast<float*>(gbase);
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int n = 8 * j + n0;
                t[n * LD + m0] = d[4 * j]; t[(n + 1) * LD + m0] = d[4 * j + 1];
                t[n * LD + m0 + 8] = d[4 * j + 2]; t[(n + 1) * LD + m0 + 8] = d[4 * j + 3];
            }
            asm volatile("bar.sync 1, 128;\n" ::: "memory");
            float* o = reinterpret_cast<float*>(out) + (size_t)part * M * N;
            for (int c = tid; c < BM * (BN / 4); c += 128) {
                const int r = c / (BN / 4), q = c % (BN / 4);
                if (r < M) *reinterpret_cast<float4*>(o + (size_t)r * N + nt * BN + 4 * q) = *reinterpret_cast<const float4*>(t + r * LD + 4 * q);
            }
        } else {
            constexpr int LD = BN + 8;
            __nv_bfloat16* t = reinterpret_cast<__nv_bfloat16*>(gbase);
            float b0 = 0.0f, b1 = 0.0f;
            if (bias != nullptr) { b0 = __bfloat162float(bias[nt * BN + m0]); b1 = __bfloat162float(bias[nt * BN + m0 + 8]); }
#pragma unroll
            for (int j = 0; j < 16; j++) {
                const int n = 8 * j + n0;
                t[n * LD + m0] = __float2bfloat16(d[4 * j] + b0); t[(n + 1) * LD + m0] = __float2bfloat16(d[4 * j + 1] + b0);
                t[n * LD + m0 + 8] = __float2bfloat16(d[4 * j + 2] + b1); t[(n + 1) * LD + m0 + 8] = __float2bfloat16(d[4 * j + 3] + b1);
            }
            asm volatile("bar.sync 1, 128;\n" ::: "memory");
            __nv_bfloat16* o = reinterpret_cast<__nv_bfloat16*>(out);
            for (int c = tid; c < BM * (BN / 8); c += 128) {
                const int r = c / (BN / 8), q = c % (BN / 8);
                if (r < M) *reinterpret_cast<uint4*>(o + (size_t)r * N + nt * BN + 8 * q) = *reinterpret_cast<const uint4*>(t + r * LD + 8 * q);
            }
        }
    }
    if (CL > 1) clusterSync();  // no block leaves while another of its cluster may still copy into it or arrive on it
}

// The kernel before: x = src * 1 (128 blocks, as a norm of 128 rows), then lets the product start.
__global__ void writeX(const __nv_bfloat16* src, __nv_bfloat16* x, int K) {
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    const size_t r = blockIdx.x;
    for (int c = threadIdx.x; c < K; c += blockDim.x) x[r * K + c] = __float2bfloat16(__bfloat162float(src[r * K + c]) * 1.0f);
}

template <int CL, int ST, bool PARTS, bool PDL, int G = 1>
static void launchOurs(const TMap& mx, const TMap& mw, void* out, int M, int N, int K, int parts, cudaStream_t st) {
    constexpr int smem = ST * G * SB + 1024;
    static bool set = false;
    if (!set) { CK(cudaFuncSetAttribute(rows128<CL, ST, PARTS, PDL, G>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem)); set = true; }
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = dim3((N / BN) * parts); cfg.blockDim = dim3(160); cfg.dynamicSmemBytes = smem; cfg.stream = st;
    cudaLaunchAttribute at[2]; int na = 0;
    if (CL > 1) { at[na].id = cudaLaunchAttributeClusterDimension; at[na].val.clusterDim.x = CL; at[na].val.clusterDim.y = 1; at[na].val.clusterDim.z = 1; na++; }
    if (PDL) { at[na].id = cudaLaunchAttributeProgrammaticStreamSerialization; at[na].val.programmaticStreamSerializationAllowed = 1; na++; }
    cfg.attrs = at; cfg.numAttrs = na;
    CK(cudaLaunchKernelEx(&cfg, rows128<CL, ST, PARTS, PDL, G>, mx, mw, (const __nv_bfloat16*)nullptr, out, M, N, K / parts));
}

int main() {
    cublasHandle_t h; cublasCreate(&h);
    cudaStream_t st; CK(cudaStreamCreate(&st)); cublasSetStream(h, st);
    void* ws; CK(cudaMalloc(&ws, 64 << 20)); cublasSetWorkspace(h, ws, 64 << 20);
    struct Shape { const char* name; int M, N, K, parts; };
    std::vector<Shape> shapes = {{"MLP in", 128, 7168, 1792, 1}, {"MLP in 64 rows", 64, 7168, 1792, 1},
                                 {"qkv", 128, 5376, 1792, 1}, {"MLP out", 128, 1792, 3584, 4}};
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    const int chain = 20;  // products a graph, each on its own copy of W, each after the kernel that writes x
    for (auto sh : shapes) {
        const int M = sh.M, N = sh.N, K = sh.K, parts = sh.parts;
        const size_t wBytes = (size_t)N * K * 2;
        const int copies = chain;
        __nv_bfloat16 *src, *x, *w, *o1;
        float* op;
        CK(cudaMalloc(&src, (size_t)BM * K * 2)); CK(cudaMalloc(&x, (size_t)BM * K * 2)); CK(cudaMalloc(&w, wBytes * copies));
        CK(cudaMalloc(&o1, (size_t)M * N * 2)); CK(cudaMalloc(&op, (size_t)parts * M * N * 4));
        fillRand<<<1024, 256>>>(src, (size_t)M * K, 1, 2.0f);
        for (int c = 0; c < copies; c++) fillRand<<<1024, 256>>>(w + (size_t)c * N * K, (size_t)N * K, 2, 0.1f);
        CK(cudaDeviceSynchronize());
        std::vector<TMap> mws(copies);
        for (int c = 0; c < copies; c++) mws[c] = makeMap(w + (size_t)c * N * K, N, K, BN);
        TMap mx = makeMap(x, M, K, BM);
        float alpha = 1, beta = 0;
        auto pre = [&]() { writeX<<<M, 256, 0, st>>>(src, x, K); };
        // us a product: a graph of `chain` pairs (the kernel before, the product), replayed, less the same graph of
        // the kernel before alone
        auto timeGraph = [&](auto product) {
            cudaGraph_t g; cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeGlobal));
            for (int c = 0; c < chain; c++) { pre(); product(c); }
            CK(cudaStreamEndCapture(st, &g));
            CK(cudaGraphInstantiate(&ge, g, 0));
            std::vector<float> ts;
            for (int r = 0; r < 25; r++) {
                cudaEventRecord(e0, st); cudaGraphLaunch(ge, st); cudaEventRecord(e1, st); cudaEventSynchronize(e1);
                float ms; cudaEventElapsedTime(&ms, e0, e1); if (r >= 5) ts.push_back(ms * 1000 / chain);
            }
            CK(cudaGetLastError());
            cudaGraphExecDestroy(ge); cudaGraphDestroy(g);
            std::sort(ts.begin(), ts.end()); return ts[ts.size() / 2];
        };
        const float tp = timeGraph([&](int) {});
        const float tc = timeGraph([&](int c) {
            cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &alpha, w + (size_t)c * N * K, CUDA_R_16BF, K, x,
                         CUDA_R_16BF, K, &beta, o1, CUDA_R_16BF, N, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        });
        printf("%-15s M %4d N %5d K %5d parts %d W %4.1f MB: the kernel before %5.2f us; cuBLAS %6.2f us", sh.name, M, N, K,
               parts, wBytes / 1e6, tp, tc - tp);
        std::vector<__nv_bfloat16> h1((size_t)M * N);
        CK(cudaMemcpy(h1.data(), o1, h1.size() * 2, cudaMemcpyDeviceToHost));  // the last product's: copy chain - 1
        std::vector<float> hp((size_t)parts * M * N);
        std::vector<__nv_bfloat16> h2((size_t)M * N);
        auto check = [&](const char* name, float t) {
            CK(cudaDeviceSynchronize());
            double maxd = 0, maxa = 0;
            if (parts > 1) {
                CK(cudaMemcpy(hp.data(), op, hp.size() * 4, cudaMemcpyDeviceToHost));
                for (size_t i = 0; i < h1.size(); i++) {
                    double s = 0; for (int p = 0; p < parts; p++) s += hp[(size_t)p * M * N + i];
                    maxd = std::max(maxd, std::fabs(s - __bfloat162float(h1[i]))); maxa = std::max(maxa, std::fabs(s));
                }
            } else {
                CK(cudaMemcpy(h2.data(), op, h2.size() * 2, cudaMemcpyDeviceToHost));
                for (size_t i = 0; i < h1.size(); i++) {
                    double a = __bfloat162float(h1[i]), b = __bfloat162float(h2[i]);
                    maxd = std::max(maxd, std::fabs(a - b)); maxa = std::max(maxa, std::fabs(a));
                }
            }
            printf("\n    %-22s %6.2f us  max diff %.1e of max %.2f", name, t - tp, maxd, maxa);
        };
#define RUN(ST, G, PDL, LABEL)                                                                                        \
        if ((K / parts) % (KC * G) == 0) {                                                                            \
            CK(cudaMemset(op, 0, (size_t)parts * M * N * 4));                                                         \
            float t = timeGraph([&](int c) {                                                                          \
                if (parts > 1) launchOurs<1, ST, true, PDL, G>(mx, mws[c], op, M, N, K, parts, st);                   \
                else launchOurs<1, ST, false, PDL, G>(mx, mws[c], op, M, N, K, parts, st);                            \
            });                                                                                                       \
            check(LABEL, t);                                                                                          \
        }
        RUN(8, 1, true, "8 stages of 64, pdl")
        RUN(6, 1, true, "6 stages of 64, pdl")
        RUN(4, 2, true, "4 stages of 128, pdl")
        RUN(3, 2, true, "3 stages of 128, pdl")
        RUN(2, 4, true, "2 stages of 256, pdl")
        RUN(8, 1, false, "8 stages of 64, plain")
        RUN(4, 2, false, "4 stages of 128, plain")
        printf("\n");
        cudaFree(src); cudaFree(x); cudaFree(w); cudaFree(o1); cudaFree(op);
    }
    return 0;
}
