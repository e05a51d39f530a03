// How fast one H200 streams linear attention's decode state in the access patterns of a decode step, with none of the
// step's other work: based-1b's S (153 features by 112 float32 a (sequence, head)), 16 heads, 128 and 1,024
// sequences, each pattern reading every byte once and summing rows of S with fixed weights. Each launch is timed
// alone with CUDA events after a 256 MiB write that flushes the L2 cache. Output: la-state-stream-h200.txt.
//
//   nvcc -O3 -std=c++17 -arch=sm_90a -o la-state-stream la-state-stream.cu && ./la-state-stream
#include <cstdio>
#include <cstdlib>
#include <cuda_runtime.h>
#include <vector>
#define CK(x) do { cudaError_t e = (x); if (e != cudaSuccess) { printf("%s: %s\n", #x, cudaGetErrorString(e)); exit(1);} } while (0)
constexpr int E = 153, DH = 112, Q = DH / 4, ITEM = E * DH;

// the bound: every float4 read once by a grid-stride loop, 8 loads a thread in flight
__global__ void ideal(const float4* __restrict__ s, long n4, float* out) {
    float acc = 0;
    long stride = (long)gridDim.x * blockDim.x;
    long i = (long)blockIdx.x * blockDim.x + threadIdx.x;
    for (; i + 7 * stride < n4; i += 8 * stride) {
        float4 v[8];
#pragma unroll
        for (int u = 0; u < 8; u++) v[u] = s[i + u * stride];
#pragma unroll
        for (int u = 0; u < 8; u++) acc += v[u].x + v[u].y + v[u].z + v[u].w;
    }
    for (; i < n4; i += stride) { float4 v = s[i]; acc += v.x + v.y + v.z + v.w; }
    if (acc == 12345.f) out[0] = acc;
}

// a warp's sweep over one (sequence, head)'s rows, R rows a lane in flight, lanes 0..27 a column quad each; the rows'
// weights: WEIGHTS 0, 0.5; 1, loaded from pqg; 2, 0.5 on the quad's first column and 1 on the others
template <int R, int WEIGHTS>
__device__ __forceinline__ void warpRows(const float4* S4, int lane, const float* __restrict__ pqg, int w, float* out) {
    float4 num = make_float4(0, 0, 0, 0);
    bool on = lane < Q;
    for (int a0 = 0; a0 < E; a0 += R) {
        float4 v[R];
#pragma unroll
        for (int u = 0; u < R; u++) v[u] = (on && a0 + u < E) ? S4[(a0 + u) * Q + lane] : make_float4(0, 0, 0, 0);
#pragma unroll
        for (int u = 0; u < R; u++) {
            if (WEIGHTS == 2) {
                num.x += 0.5f * v[u].x; num.y += v[u].y; num.z += v[u].z; num.w += v[u].w;
            } else {
                float p = WEIGHTS == 1 ? (a0 + u < E ? pqg[w * E + a0 + u] : 0.f) : 0.5f;
                num.x += p * v[u].x; num.y += p * v[u].y; num.z += p * v[u].z; num.w += p * v[u].w;
            }
        }
    }
    if (on) reinterpret_cast<float4*>(out)[(long)w * Q + lane] = num;
}

// a warp a (sequence, head), R rows in flight a lane (lanes 0..27 a column quad each); SLOT: the item's place read
// from a table first; QDEP: each row's weight loaded from global memory (the second round waits on them)
template <int R, bool SLOT, bool QDEP>
__global__ void __launch_bounds__(128) warpItem(const float* __restrict__ st, const int* __restrict__ slots,
                                                const float* __restrict__ pqg, float* out, int items) {
    int w = blockIdx.x * 4 + (threadIdx.x >> 5), lane = threadIdx.x & 31;
    if (w >= items) return;
    long slot = SLOT ? slots[w] : w;
    const float4* S4 = reinterpret_cast<const float4*>(st + slot * (long)ITEM);
    warpRows<R, QDEP ? 1 : 0>(S4, lane, pqg, w, out);
}

// the 9 row groups' sums of a block added and written
__device__ void sumGroups(float4 (*red)[Q], float* out, int item) {
    __syncthreads();
    if (threadIdx.x < Q) {
        float4 t = red[0][threadIdx.x];
        for (int i = 1; i < 9; i++) { t.x += red[i][threadIdx.x].x; t.y += red[i][threadIdx.x].y; t.z += red[i][threadIdx.x].z; t.w += red[i][threadIdx.x].w; }
        reinterpret_cast<float4*>(out)[(long)item * Q + threadIdx.x] = t;
    }
}

// a block of 256 a (sequence, head) (9 row groups by 28 quads), U rows a thread in flight, the groups' sums added in
// shared memory
template <int U, int MINB>
__global__ void __launch_bounds__(256, MINB) blockItem(const float* __restrict__ st, const int* __restrict__ slots,
                                                       float* out) {
    __shared__ float4 red[9][Q];
    int item = blockIdx.x, c = threadIdx.x % Q, g = threadIdx.x / Q;
    long slot = slots[item];
    const float4* S4 = reinterpret_cast<const float4*>(st + slot * (long)ITEM);
    float4 num = make_float4(0, 0, 0, 0);
    if (g < 9) {
        for (int a0 = g; a0 < E; a0 += 9 * U) {
            float4 v[U];
#pragma unroll
            for (int u = 0; u < U; u++) { int a = a0 + u * 9; v[u] = a < E ? S4[a * Q + c] : make_float4(0, 0, 0, 0); }
#pragma unroll
            for (int u = 0; u < U; u++) { num.x += 0.5f * v[u].x; num.y += v[u].y; num.z += v[u].z; num.w += v[u].w; }
        }
        red[g][c] = num;
    }
    sumGroups(red, out, item);
}

// a block of 256 a (sequence, head), its S copied whole into shared memory by one bulk copy (cp.async.bulk)
__global__ void __launch_bounds__(256) bulkItem(const float* __restrict__ st, const int* __restrict__ slots, float* out) {
    extern __shared__ __align__(128) float sm[];
    __shared__ unsigned long long bar;
    __shared__ float4 red[9][Q];
    int item = blockIdx.x, c = threadIdx.x % Q, g = threadIdx.x / Q;
    unsigned b = (unsigned)__cvta_generic_to_shared(&bar);
    if (threadIdx.x == 0) {
        asm volatile("mbarrier.init.shared.b64 [%0], 1;" ::"r"(b));
        asm volatile("fence.mbarrier_init.release.cluster;");
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        long slot = slots[item];
        asm volatile("mbarrier.arrive.expect_tx.shared.b64 _, [%0], %1;" ::"r"(b), "r"(ITEM * 4));
        asm volatile("cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];"
                     ::"r"((unsigned)__cvta_generic_to_shared(sm)), "l"(st + slot * (long)ITEM), "r"(ITEM * 4), "r"(b) : "memory");
    }
    asm volatile("{\n .reg .pred p;\n W: mbarrier.try_wait.parity.shared.b64 p, [%0], 0;\n @!p bra W;\n}" ::"r"(b) : "memory");
    float4 num = make_float4(0, 0, 0, 0);
    const float4* S4 = reinterpret_cast<const float4*>(sm);
    if (g < 9) {
        for (int a = g; a < E; a += 9) { float4 v = S4[a * Q + c]; num.x += 0.5f * v.x; num.y += v.y; num.z += v.z; num.w += v.w; }
        red[g][c] = num;
    }
    sumGroups(red, out, item);
}

// a block of 16 warps a sequence, a warp a head, R rows a lane in flight
template <int R>
__global__ void __launch_bounds__(512) seqBlock(const float* __restrict__ st, const int* __restrict__ slots, float* out) {
    int seq = blockIdx.x, head = threadIdx.x >> 5, lane = threadIdx.x & 31;
    long slot = slots[seq];
    int w = seq * 16 + head;
    const float4* S4 = reinterpret_cast<const float4*>(st + (slot * 16 + head) * (long)ITEM);
    warpRows<R, 2>(S4, lane, nullptr, w, out);
}

int main() {
    int dev = 0; cudaDeviceProp p; CK(cudaGetDeviceProperties(&p, dev));
    printf("%s, %d SMs\n", p.name, p.multiProcessorCount);
    const long maxItems = 1024L * 16;
    float* st; CK(cudaMalloc(&st, maxItems * ITEM * 4));
    CK(cudaMemset(st, 0, maxItems * ITEM * 4));
    float* out; CK(cudaMalloc(&out, maxItems * DH * 4));
    float* pq; CK(cudaMalloc(&pq, maxItems * E * 4)); CK(cudaMemset(pq, 0, maxItems * E * 4));
    int* slots; CK(cudaMalloc(&slots, maxItems * 4));
    std::vector<int> h(maxItems); for (long i = 0; i < maxItems; i++) h[i] = (int)i;
    CK(cudaMemcpy(slots, h.data(), maxItems * 4, cudaMemcpyHostToDevice));
    char* flush; size_t fb = 256u << 20; CK(cudaMalloc(&flush, fb));
    CK(cudaFuncSetAttribute(bulkItem, cudaFuncAttributeMaxDynamicSharedMemorySize, ITEM * 4));
    cudaEvent_t e0, e1; cudaEventCreate(&e0); cudaEventCreate(&e1);
    for (int B : {128, 1024}) {
        int items = B * 16; double bytes = (double)items * ITEM * 4;
        auto timeit = [&](const char* name, auto launch) {
            float best = 1e9, sum = 0; int reps = 10;
            for (int r = 0; r < reps + 2; r++) {
                CK(cudaMemsetAsync(flush, r, fb));
                cudaEventRecord(e0); launch(); cudaEventRecord(e1); CK(cudaEventSynchronize(e1));
                float ms; cudaEventElapsedTime(&ms, e0, e1);
                if (r >= 2) { sum += ms; if (ms < best) best = ms; }
            }
            CK(cudaGetLastError());
            printf("B %5d %-34s mean %8.2f us best %8.2f us  %6.2f TB/s\n", B, name, 1000 * sum / reps, 1000 * best, bytes / (sum / reps) / 1e9);
        };
        long n4 = (long)items * ITEM / 4;
        timeit("ideal grid-stride, 132x4 blocks", [&] { ideal<<<p.multiProcessorCount * 4, 512>>>((const float4*)st, n4, out); });
        timeit("ideal grid-stride, 132x8 blocks", [&] { ideal<<<p.multiProcessorCount * 8, 256>>>((const float4*)st, n4, out); });
        timeit("warp item R16", [&] { warpItem<16, false, false><<<(items + 3) / 4, 128>>>(st, slots, pq, out, items); });
        timeit("warp item R16 slot", [&] { warpItem<16, true, false><<<(items + 3) / 4, 128>>>(st, slots, pq, out, items); });
        timeit("warp item R16 slot q", [&] { warpItem<16, true, true><<<(items + 3) / 4, 128>>>(st, slots, pq, out, items); });
        timeit("warp item R8 slot", [&] { warpItem<8, true, false><<<(items + 3) / 4, 128>>>(st, slots, pq, out, items); });
        timeit("warp item R32 slot", [&] { warpItem<32, true, false><<<(items + 3) / 4, 128>>>(st, slots, pq, out, items); });
        timeit("block item U8 minb3", [&] { blockItem<8, 3><<<items, 256>>>(st, slots, out); });
        timeit("block item U17 minb2", [&] { blockItem<17, 2><<<items, 256>>>(st, slots, out); });
        timeit("block item U4 minb4", [&] { blockItem<4, 4><<<items, 256>>>(st, slots, out); });
        timeit("bulk item (v5 way)", [&] { bulkItem<<<items, 256, ITEM * 4>>>(st, slots, out); });
        timeit("seq block 16 warps R16", [&] { seqBlock<16><<<B, 512>>>(st, slots, out); });
        timeit("seq block 16 warps R8", [&] { seqBlock<8><<<B, 512>>>(st, slots, out); });
    }
    return 0;
}
