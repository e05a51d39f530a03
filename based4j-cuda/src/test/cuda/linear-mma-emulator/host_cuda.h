// What the CUDA source of train_linear_mma.cuh needs to run on the host (see emulate.cpp): a block at a time, each
// thread of the block a std::thread; __syncthreads and __syncwarp are barriers, and the warp-collective operations
// (shuffles, ldmatrix, mma) exchange through a per-warp buffer between two barriers. ldmatrix and mma follow the
// PTX ISA's definitions of their fragments (written from the ISA text, not from the kernels' index arithmetic), with
// bf16 rounded to nearest even. cp.async copies at once, so a missing cp.async wait would go unseen here.
// Dynamic shared memory is bounded as on the GPU: each launch gets exactly the bytes the host passes, ending where an
// inaccessible guard region begins, so an access past the end stops the run with the offset; a write before the
// start (within the page below it) is found by a canary checked after every block.
#pragma once
#include <algorithm>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <csignal>
#include <cstdio>
#include <functional>
#include <sys/mman.h>
#include <unistd.h>
#include <thread>
#include <vector>

#define __device__
#define __host__
#define __global__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __align__(n)
#define __shared__
#define __restrict__

using std::max;
using std::min;

struct uint3v { unsigned x, y, z; };
inline thread_local uint3v threadIdx;
inline uint3v blockIdx_g;
inline uint3v gridDim, blockDim;
#define blockIdx blockIdx_g

struct float2 { float x, y; };
struct int2 { int x, y; };
struct uint4 { unsigned x, y, z, w; };
struct float4 { float x, y, z, w; };
inline float4 make_float4(float a, float b, float c, float d) { return {a, b, c, d}; }
inline float2 make_float2(float a, float b) { return {a, b}; }
inline int2 make_int2(int a, int b) { return {a, b}; }
inline uint4 make_uint4(unsigned a, unsigned b, unsigned c, unsigned d) { return {a, b, c, d}; }
inline float __int_as_float(int i) { float f; memcpy(&f, &i, 4); return f; }
inline int __float_as_int(float f) { int i; memcpy(&i, &f, 4); return i; }
inline float __fmul_rn(float a, float b) { return a * b; }

struct __nv_bfloat16 { uint16_t x; };
struct __nv_bfloat162 { __nv_bfloat16 x, y; };
inline float __bfloat162float(__nv_bfloat16 b) { uint32_t u = (uint32_t)b.x << 16; float f; memcpy(&f, &u, 4); return f; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
    uint32_t u; memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1u);
    return {(uint16_t)(u >> 16)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {__bfloat162float(v.x), __bfloat162float(v.y)}; }

// ------------------------------------------------------------------ block context
struct EmuBlock {
    int threads;
    std::barrier<> block;
    std::vector<std::barrier<>*> warps;
    std::vector<std::vector<uint64_t>> xbuf;  // per warp, 32 lanes x 16 words
    explicit EmuBlock(int n) : threads(n), block(n) {
        for (int w = 0; w < n / 32; w++) { warps.push_back(new std::barrier<>(32)); xbuf.emplace_back(32 * 16); }
    }
    ~EmuBlock() { for (auto* b : warps) delete b; }
};
inline EmuBlock* emuBlock = nullptr;
inline int emuWarp() { return threadIdx.x >> 5; }
inline int emuLane() { return threadIdx.x & 31; }
inline void __syncthreads() { emuBlock->block.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) { emuBlock->warps[emuWarp()]->arrive_and_wait(); }
inline uint64_t* emuSlot(int lane) { return &emuBlock->xbuf[emuWarp()][lane * 16]; }

inline float __shfl_sync(unsigned, float v, int src) {
    memcpy(emuSlot(emuLane()), &v, 4);
    __syncwarp();
    float r; memcpy(&r, emuSlot(src & 31), 4);
    __syncwarp();
    return r;
}
inline float __shfl_xor_sync(unsigned m, float v, int x) {
    memcpy(emuSlot(emuLane()), &v, 4);
    __syncwarp();
    float r; memcpy(&r, emuSlot((emuLane() ^ x) & 31), 4);
    __syncwarp();
    return r;
}

// ------------------------------------------------------------------ dynamic shared memory, bounded
// The kernels' `extern __shared__ unsigned char lmmShared[]` becomes a pointer to an array of unknown bound, so that
// each launch can place its window (see emuLaunch).
#define lmmShared (*emuShared)
namespace b4j {
inline unsigned char (*emuShared)[] = nullptr;
}
constexpr size_t EMU_PAGE = 4096;
constexpr size_t EMU_GUARD = 16u << 20;  // past the end, inaccessible: more than any tile offset of the kernels
constexpr unsigned char EMU_CANARY = 0xa5;
struct EmuWindow {
    unsigned char* map = nullptr;  // [EMU_PAGE-aligned slack | bytes | guard]
    size_t mapBytes = 0, slack = 0;
    int bytes = 0;
};
inline EmuWindow emuWindow;

inline void emuSharedFault(int, siginfo_t* info, void*) {
    const unsigned char* a = static_cast<unsigned char*>(info->si_addr);
    char line[200];
    int n;
    if (emuWindow.map != nullptr && a >= emuWindow.map && a < emuWindow.map + emuWindow.mapBytes) {
        n = snprintf(line, sizeof line, "out-of-bounds shared memory access at byte %ld of a %d-byte window, block "
                     "(%u, %u, %u), thread %u\n", (long)(a - (emuWindow.map + emuWindow.slack)), emuWindow.bytes,
                     blockIdx_g.x, blockIdx_g.y, blockIdx_g.z, threadIdx.x);
    } else {
        n = snprintf(line, sizeof line, "segmentation fault at %p, outside shared memory\n", (const void*)a);
    }
    if (write(2, line, (size_t)n) < 0) _exit(3);
    _exit(2);
}

/** A window of exactly bytes (a multiple of 16) whose end is the start of the guard. */
inline void emuSharedOpen(int bytes) {
    static bool handler = false;
    if (!handler) {
        struct sigaction sa {};
        sa.sa_sigaction = emuSharedFault;
        sa.sa_flags = SA_SIGINFO;
        sigaction(SIGSEGV, &sa, nullptr);
        handler = true;
    }
    if (bytes % 16 != 0) { fprintf(stderr, "dynamic shared memory of %d bytes, not a multiple of 16\n", bytes); exit(2); }
    const size_t span = (bytes + EMU_PAGE - 1) / EMU_PAGE * EMU_PAGE;
    EmuWindow w;
    w.bytes = bytes;
    w.slack = span - bytes;
    w.mapBytes = span + EMU_GUARD;
    void* m = mmap(nullptr, w.mapBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED || (span > 0 && mprotect(m, span, PROT_READ | PROT_WRITE) != 0)) { perror("mmap"); exit(2); }
    w.map = static_cast<unsigned char*>(m);
    emuWindow = w;
    b4j::emuShared = reinterpret_cast<unsigned char (*)[]>(w.map + w.slack);
}

/** Before a block: the slack below the window holds the canary, the window itself garbage (the GPU's is unset). */
inline void emuSharedFill() {
    memset(emuWindow.map, EMU_CANARY, emuWindow.slack);
    memset(emuWindow.map + emuWindow.slack, 0xff, emuWindow.bytes);
}

/** After a block: the canary below the window untouched. */
inline void emuSharedCheck() {
    for (size_t i = 0; i < emuWindow.slack; i++) {
        if (emuWindow.map[i] != EMU_CANARY) {
            fprintf(stderr, "out-of-bounds shared memory write at byte %ld of a %d-byte window, block (%u, %u, %u)\n",
                    (long)i - (long)emuWindow.slack, emuWindow.bytes, blockIdx_g.x, blockIdx_g.y, blockIdx_g.z);
            exit(2);
        }
    }
}

inline void emuSharedClose() {
    munmap(emuWindow.map, emuWindow.mapBytes);
    emuWindow = EmuWindow{};
    b4j::emuShared = nullptr;
}

/** Runs kernel() for every block of the grid, blockThreads threads each, with sharedBytes of dynamic shared memory. */
inline void emuLaunch(uint3v grid, int blockThreads, int sharedBytes, const std::function<void()>& kernel) {
    gridDim = grid;
    blockDim = {(unsigned)blockThreads, 1, 1};
    emuSharedOpen(sharedBytes);
    for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
            for (unsigned x = 0; x < grid.x; x++) {
                blockIdx_g = {x, y, z};
                emuSharedFill();
                EmuBlock b(blockThreads);
                emuBlock = &b;
                std::vector<std::thread> ts;
                for (int t = 0; t < blockThreads; t++) ts.emplace_back([t, &kernel] { threadIdx = {(unsigned)t, 0, 0}; kernel(); });
                for (auto& t : ts) t.join();
                emuBlock = nullptr;
                emuSharedCheck();
            }
    emuSharedClose();
}

// ------------------------------------------------------------------ the kernels' warp primitives (PTX semantics)
#define B4J_LMM_HOST_PRIMITIVES
namespace b4j {
inline void lmmCopy16(void* dst, const void* src) { memcpy(dst, src, 16); }
inline void lmmCommit() {}
template <int N> inline void lmmWait() {}

/** ldmatrix .m8n8 .b16: matrix i's rows at the addresses of lanes 8i..8i+7; lane l gets (row l/4, cols 2(l%4), +1),
 *  or transposed (rows 2(l%4), +1 at col l/4). */
template <int X, bool TRANS>
inline void emuLdsm(unsigned* r, const void* p) {
    const int lane = emuLane();
    const void* mine = p;
    memcpy(emuSlot(lane), &mine, sizeof(void*));
    __syncwarp();
    for (int i = 0; i < X; i++) {
        const uint16_t* rows[8];
        for (int k = 0; k < 8; k++) memcpy(&rows[k], emuSlot(8 * i + k), sizeof(void*));
        uint16_t lo, hi;
        if (!TRANS) { lo = rows[lane / 4][2 * (lane % 4)]; hi = rows[lane / 4][2 * (lane % 4) + 1]; }
        else { lo = rows[2 * (lane % 4)][lane / 4]; hi = rows[2 * (lane % 4) + 1][lane / 4]; }
        r[i] = (unsigned)lo | ((unsigned)hi << 16);
    }
    __syncwarp();
}
inline void lmmLdsm4(unsigned (&r)[4], const void* p) { emuLdsm<4, false>(r, p); }
inline void lmmLdsm4T(unsigned (&r)[4], const void* p) { emuLdsm<4, true>(r, p); }
inline void lmmLdsm2T(unsigned (&r)[2], const void* p) { emuLdsm<2, true>(r, p); }

inline float emuBf(unsigned reg, int half) { __nv_bfloat16 b{(uint16_t)(half ? reg >> 16 : reg & 0xffff)}; return __bfloat162float(b); }

/** mma.m16n8k16.row.col f32 += bf16 x bf16, fragments as the PTX ISA lays them out. */
inline void lmmMma(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    const int lane = emuLane();
    uint64_t* s = emuSlot(lane);
    unsigned w[10] = {a[0], a[1], a[2], a[3], b0, b1};
    memcpy(&w[6], d, 16);
    memcpy(s, w, sizeof(w));
    __syncwarp();
    float A[16][16], B[16][8], C[16][8];
    for (int l = 0; l < 32; l++) {
        unsigned v[10];
        memcpy(v, emuSlot(l), sizeof(v));
        const int g = l >> 2, q = l & 3;
        for (int i = 0; i < 8; i++) {  // a_i: row g (i in 0,1,4,5) or g+8, col 2q + (i&1) (+8 for i >= 4)
            const int row = g + ((i == 2 || i == 3 || i == 6 || i == 7) ? 8 : 0);
            const int col = 2 * q + (i & 1) + (i >= 4 ? 8 : 0);
            A[row][col] = emuBf(v[i / 2], i & 1);
        }
        for (int i = 0; i < 4; i++) {  // b_i: row 2q + (i&1) (+8 for i >= 2), col g
            B[2 * q + (i & 1) + (i >= 2 ? 8 : 0)][g] = emuBf(v[4 + i / 2], i & 1);
        }
        for (int i = 0; i < 4; i++) {  // c_i: row g (+8 for i >= 2), col 2q + (i&1)
            float c; memcpy(&c, &v[6 + i], 4);
            C[g + (i >= 2 ? 8 : 0)][2 * q + (i & 1)] = c;
        }
    }
    __syncwarp();
    const int g = lane >> 2, q = lane & 3;
    for (int i = 0; i < 4; i++) {
        const int row = g + (i >= 2 ? 8 : 0), col = 2 * q + (i & 1);
        double acc = C[row][col];
        for (int k = 0; k < 16; k++) acc += (double)A[row][k] * B[k][col];
        d[i] = (float)acc;
    }
}
}  // namespace b4j

// ------------------------------------------------------------------ what based4j_kernels.cu gives train_linear.cuh
namespace b4j {
typedef long long i64;
inline float toF(float x) { return x; }
inline float toF(__nv_bfloat16 x) { return __bfloat162float(x); }
template <typename T> T fromF(float x);
template <> inline float fromF<float>(float x) { return x; }
template <> inline __nv_bfloat16 fromF<__nv_bfloat16>(float x) { return __float2bfloat16_rn(x); }
inline i64 globalThread() { return (i64)blockIdx.x * blockDim.x + threadIdx.x; }
inline i64 globalStride() { return (i64)gridDim.x * blockDim.x; }
inline int expandedDim(int f) { return 1 + f + f * (f + 1) / 2; }
struct Taylor { float lin, diag, cross; };
inline Taylor taylorOf(int f) {
    Taylor c;
    c.lin = (float)pow((double)f, -0.25);
    c.diag = (float)(1.0 / sqrt(2.0 * f));
    c.cross = (float)(1.0 / sqrt((double)f));
    return c;
}
}  // namespace b4j
namespace b4j_bf16 { typedef __nv_bfloat16 W; typedef __nv_bfloat16 A; }
#define B4J_KERNEL(...)
