// Runs the tensor-core linear-attention training kernels (src/main/cuda/train_linear_mma.cuh) on the host, through
// host_cuda.h, and compares the forward and the backward with a float64 evaluation of the definition: a desk check of
// the kernels' fragment and index arithmetic where no GPU is at hand (an index error shows as errors of tens of bf16
// roundings or more; the kernels' own rounding as about one). Where the scan kernels (train_linear_scan.cuh) serve
// the shape, they run too and their results are compared with the chunk kernels' bit for bit, as are those of the
// rounded-state backward kernels (bf16 states, staged whole in shared memory) where they serve (E up to 160). Each
// launch gets the dynamic shared memory that MixerTrainKernels gives it, bounded (host_cuda.h): a tile carved past
// the host's count stops the run. Not part of the build:
//
//   g++ -std=c++20 -O2 -pthread -fno-strict-aliasing -I based4j-cuda/src/main/cuda -o /tmp/lmm-emulate
//       based4j-cuda/src/test/cuda/linear-mma-emulator/emulate.cpp       (one command line)
//   /tmp/lmm-emulate [seed [batch seqLen heads featureDim headDim [split]]]
//
// With a split s > 1 (headDim / s a head dim of the tensor-core kernels) it runs the head split of MixerTrainKernels
// (train_linear_split.cuh): the kernels on heads x s heads of headDim / s sharing the repeated q and k, the copies'
// gradients summed into dq and dk, compared with the definition for the whole heads.
//
// Inputs are Gaussian, rounded to bf16 as the GPU holds them; dq, dk and dv start from Gaussian values (the kernels
// add into them), as in LinearAttentionTrainKernelsTest. Errors are printed in units of 2^-8: the largest against the
// largest value of the result, and the root-mean-square against the result's own.
#include "host_cuda.h"
#include "train_linear.cuh"
#include "train_linear_split.cuh"

#include <cstdio>
#include <cstdlib>
#include <random>

using bf16 = __nv_bfloat16;

namespace {

struct Shape {
    int batch, seqLen, heads, f, dh;
};

std::vector<bf16> toBf16(const std::vector<float>& a) {
    std::vector<bf16> b(a.size());
    for (size_t i = 0; i < a.size(); i++) b[i] = __float2bfloat16_rn(a[i]);
    return b;
}

std::vector<float> toFloat(const std::vector<bf16>& a) {
    std::vector<float> b(a.size());
    for (size_t i = 0; i < a.size(); i++) b[i] = __bfloat162float(a[i]);
    return b;
}

/** max |got - want| / max |want| (NaN sticks). */
double largestError(const std::vector<double>& want, const std::vector<float>& got) {
    double scale = 0, err = 0;
    for (size_t i = 0; i < want.size(); i++) {
        scale = std::max(scale, std::fabs(want[i]));
        const double e = std::fabs(got[i] - want[i]);
        if (!(e <= err)) err = e;
    }
    return err / scale;
}

/** |got - want| / |want| in the 2-norm. */
double rmsError(const std::vector<double>& want, const std::vector<float>& got) {
    double e = 0, w = 0;
    for (size_t i = 0; i < want.size(); i++) {
        e += (got[i] - want[i]) * (got[i] - want[i]);
        w += want[i] * want[i];
    }
    return std::sqrt(e / w);
}

/** The definition in float64, O(L^2) per sequence and head: out = y, and dq, dk, dv += the gradients. */
void reference(const Shape& sh, double eps, const std::vector<float>& q, const std::vector<float>& k,
               const std::vector<float>& v, const std::vector<float>& dout, std::vector<double>& out,
               std::vector<double>& dq, std::vector<double>& dk, std::vector<double>& dv) {
    const int L = sh.seqLen, H = sh.heads, f = sh.f, dh = sh.dh;
    const double invSqrtF = 1 / std::sqrt((double)f);
    auto row = [&](int b, int t, int h) { return (size_t)(b * L + t) * H + h; };
    auto score = [&](size_t rt, size_t rs, double& x) {
        x = 0;
        for (int i = 0; i < f; i++) x += (double)q[rt * f + i] * k[rs * f + i];
        x *= invSqrtF;
        return 1 + x + x * x / 2;
    };
    for (int b = 0; b < sh.batch; b++) {
        for (int h = 0; h < H; h++) {
            std::vector<double> g((size_t)L * dh), r(L);
            for (int t = 0; t < L; t++) {
                const size_t rt = row(b, t, h);
                std::vector<double> num(dh, 0.0);
                double den = 0, x;
                for (int s = 0; s <= t; s++) {
                    const size_t rs = row(b, s, h);
                    const double a = score(rt, rs, x);
                    den += a;
                    for (int e = 0; e < dh; e++) num[e] += a * v[rs * dh + e];
                }
                const double D = den + eps;
                double dy = 0;
                for (int e = 0; e < dh; e++) {
                    out[rt * dh + e] = num[e] / D;
                    dy += dout[rt * dh + e] * out[rt * dh + e];
                    g[(size_t)t * dh + e] = dout[rt * dh + e] / D;
                }
                r[t] = -dy / D;
            }
            for (int t = 0; t < L; t++) {
                for (int s = 0; s <= t; s++) {
                    const size_t rt = row(b, t, h), rs = row(b, s, h);
                    double x;
                    const double a = score(rt, rs, x);
                    double da = r[t];
                    for (int e = 0; e < dh; e++) da += g[(size_t)t * dh + e] * v[rs * dh + e];
                    const double dx = da * (1 + x) * invSqrtF;
                    for (int i = 0; i < f; i++) {
                        dq[rt * f + i] += dx * k[rs * f + i];
                        dk[rs * f + i] += dx * q[rt * f + i];
                    }
                    for (int e = 0; e < dh; e++) dv[rs * dh + e] += a * g[(size_t)t * dh + e];
                }
            }
        }
    }
}

/** MixerTrainKernels.linearMmaSharedBytes: the dynamic shared memory the host gives a chunk kernel (its own count). */
int chunkSharedBytes(int f, int dh, bool backward) {
    const int e = 1 + f + f * (f + 1) / 2, ldX = (f + 15) / 16 * 16 + 8, ldV = 16 * ((dh + 16) / 16) + 8;
    int bytes = 8 * ((e + 15) / 16 * 16) + 256 * ldX + 256 * ldV;
    if (backward) bytes += 128 * ldV + 4 * 64 * 72 + 4 * 64 * ((f + 15) / 16 * 16);
    return bytes;
}

/** MixerTrainKernels.linearMmaStatesSharedBytes. */
int statesSharedBytes(int f, int dh) {
    return 256 * ((f + 15) / 16 * 16 + 8) + 256 * (16 * ((dh + 16) / 16) + 8);
}

/** MixerTrainKernels.linearScanSharedBytes: the dynamic shared memory the host gives a scan kernel. */
int scanSharedBytes(int f, int dh, bool backward) {
    const int e = 1 + f + f * (f + 1) / 2, epad = (e + 15) / 16 * 16, fpad = (f + 15) / 16 * 16;
    const int ldX = fpad + 8, ldV = 16 * ((dh + 16) / 16) + 8;
    const int set = 256 * ldX + 128 * ldV * (backward ? 2 : 1);
    int bytes = 8 * epad + 2 * set + 2 * epad * ldV + 4 * epad * 8 * (dh / 8 + 1);
    if (backward) bytes += 4 * 64 * 72 + 4 * 64 * fpad;
    return bytes;
}

/** MixerTrainKernels.linearMmaRoundedSharedBytes: a backward chunk kernel with the whole state in shared memory. */
int roundedSharedBytes(int f, int dh) {
    const int e = 1 + f + f * (f + 1) / 2, epad = (e + 15) / 16 * 16, ldV = 16 * ((dh + 16) / 16) + 8;
    return chunkSharedBytes(f, dh, true) + 2 * (epad - 64) * ldV;
}

/** The launches of MixerTrainKernels' tensor-core path, NAME72 or NAME120 by the head dim. */
struct Kernels {
    bool narrow;
    void states(const bf16* x, const bf16* r, long long rStride, int rHead, int rWidth, int ones, float* states, int L,
                int H, int f, int dh, int reverse) const {
        const unsigned slabs = (unsigned)((1 + f + f * (f + 1) / 2 + b4j::LMM_SLAB - 1) / b4j::LMM_SLAB);
        emuLaunch({slabs, (unsigned)H, (unsigned)batch}, b4j::LMM_THREADS, statesSharedBytes(f, dh), [&] {
            if (narrow) {
                b4j_bf16::linearAttentionMmaStates72_bf16(x, r, rStride, rHead, rWidth, ones, states, L, H, f, dh,
                                                          reverse);
            } else {
                b4j_bf16::linearAttentionMmaStates120_bf16(x, r, rStride, rHead, rWidth, ones, states, L, H, f, dh,
                                                           reverse);
            }
        });
    }
    void roundedStates(const bf16* x, const bf16* r, long long rStride, int rHead, int rWidth, int ones,
                       bf16* states, int L, int H, int f, int dh, int reverse) const {
        const unsigned slabs = (unsigned)((1 + f + f * (f + 1) / 2 + b4j::LMM_SLAB - 1) / b4j::LMM_SLAB);
        emuLaunch({slabs, (unsigned)H, (unsigned)batch}, b4j::LMM_THREADS, statesSharedBytes(f, dh), [&] {
            if (narrow) {
                b4j_bf16::linearAttentionMmaRoundedStates72_bf16(x, r, rStride, rHead, rWidth, ones, states, L, H, f,
                                                                 dh, reverse);
            } else {
                b4j_bf16::linearAttentionMmaRoundedStates120_bf16(x, r, rStride, rHead, rWidth, ones, states, L, H, f,
                                                                  dh, reverse);
            }
        });
    }
    uint3v chunks(int L, int H) const { return {(unsigned)((L + 63) / 64), (unsigned)H, (unsigned)batch}; }
    int batch;
};

/**
 * One shape; with split s > 1 the head split of MixerTrainKernels: the kernels run on heads x s heads of dh / s whose
 * q and k are the heads' repeated (linearHeadRepeat, which also zeroes their gradients), and the copies' gradients
 * are summed into dq and dk (linearHeadSum); the errors are those of the whole heads against the definition.
 */
void run(const Shape& whole, unsigned seed, int split = 1) {
    const Shape sh{whole.batch, whole.seqLen, whole.heads * split, whole.f, whole.dh / split};  // the kernels' heads
    const int B = sh.batch, L = sh.seqLen, H = sh.heads, f = sh.f, dh = sh.dh;
    const int N = B * L, E = 1 + f + f * (f + 1) / 2, nC = (L + 63) / 64, gRow = dh + 8;
    const float eps = 1e-6f;
    std::mt19937_64 rng(seed);
    std::normal_distribution<float> normal(0, 1);
    auto gaussian = [&](size_t n) {
        std::vector<float> a(n);
        for (auto& x : a) x = __bfloat162float(__float2bfloat16_rn(normal(rng)));
        return a;
    };
    const size_t qk = (size_t)N * H * f, vs = (size_t)N * H * dh, wholeQk = (size_t)N * whole.heads * f;
    auto q = gaussian(wholeQk), k = gaussian(wholeQk), v = gaussian(vs), dout = gaussian(vs);
    auto dq0 = gaussian(wholeQk), dk0 = gaussian(wholeQk), dv0 = gaussian(vs);
    auto V = toBf16(v), DOUT = toBf16(dout), DV = toBf16(dv0);
    // what the q and k gradients of the kernels' heads start from: the given ones, or zeros for the copies
    std::vector<bf16> Q = toBf16(q), K = toBf16(k), dqStart = toBf16(dq0), dkStart = toBf16(dk0);
    const unsigned splitBlocks = (unsigned)((qk + 255) / 256);
    if (split > 1) {
        const std::vector<bf16> wq = Q, wk = K;
        Q.assign(qk, bf16{0x7fc0});
        K.assign(qk, bf16{0x7fc0});
        dqStart.assign(qk, bf16{0x7fc0});
        dkStart.assign(qk, bf16{0x7fc0});
        emuLaunch({splitBlocks, 1, 1}, 256, 0, [&] {
            b4j_bf16::linearHeadRepeat_bf16(wq.data(), wk.data(), Q.data(), K.data(), dqStart.data(), dkStart.data(),
                                            N, whole.heads, split, f);
        });
    }
    auto DQ = dqStart, DK = dkStart;
    std::vector<bf16> OUT(vs);
    // NaN where nothing is written: a kernel that reads such a place shows it
    std::vector<float> states((size_t)B * H * nC * E * (dh + 1), NAN);
    std::vector<bf16> gbuf((size_t)N * H * gRow, bf16{0x7fc0});
    const Kernels kern{dh <= 72, B};
    const bool narrow = kern.narrow;

    kern.states(K.data(), V.data(), (long long)H * dh, dh, dh, 1, states.data(), L, H, f, dh, 0);
    emuLaunch(kern.chunks(L, H), b4j::LMM_THREADS, chunkSharedBytes(f, dh, false), [&] {
        if (narrow) {
            b4j_bf16::linearAttentionMmaForward72_bf16(Q.data(), K.data(), V.data(), states.data(), OUT.data(), L, H,
                                                       f, dh, eps);
        } else {
            b4j_bf16::linearAttentionMmaForward120_bf16(Q.data(), K.data(), V.data(), states.data(), OUT.data(), L,
                                                        H, f, dh, eps);
        }
    });
    std::fill(states.begin(), states.end(), NAN);
    kern.states(K.data(), V.data(), (long long)H * dh, dh, dh, 1, states.data(), L, H, f, dh, 0);
    emuLaunch(kern.chunks(L, H), b4j::LMM_THREADS, chunkSharedBytes(f, dh, true), [&] {
        if (narrow) {
            b4j_bf16::linearAttentionMmaBackwardQ72_bf16(Q.data(), K.data(), V.data(), DOUT.data(), states.data(),
                                                         gbuf.data(), DQ.data(), L, H, f, dh, eps);
        } else {
            b4j_bf16::linearAttentionMmaBackwardQ120_bf16(Q.data(), K.data(), V.data(), DOUT.data(), states.data(),
                                                          gbuf.data(), DQ.data(), L, H, f, dh, eps);
        }
    });
    kern.states(Q.data(), gbuf.data(), (long long)H * gRow, gRow, gRow, 0, states.data(), L, H, f, dh, 1);
    emuLaunch(kern.chunks(L, H), b4j::LMM_THREADS, chunkSharedBytes(f, dh, true), [&] {
        if (narrow) {
            b4j_bf16::linearAttentionMmaBackwardKV72_bf16(Q.data(), K.data(), V.data(), gbuf.data(), states.data(),
                                                          DK.data(), DV.data(), L, H, f, dh);
        } else {
            b4j_bf16::linearAttentionMmaBackwardKV120_bf16(Q.data(), K.data(), V.data(), gbuf.data(), states.data(),
                                                           DK.data(), DV.data(), L, H, f, dh);
        }
    });

    auto differ = [](const std::vector<bf16>& a, const std::vector<bf16>& b) {
        size_t n = 0;
        for (size_t i = 0; i < a.size(); i++) n += a[i].x != b[i].x;
        return n;
    };
    const int epad = (E + 15) / 16 * 16;
    // the rounded-state backward, where it serves the shape (E up to 160): the same numbers bit for bit; its bf16
    // states in the float32 states' bytes, NaN where nothing is written
    if (epad <= b4j::LMS_MAX_FEATURES) {
        std::vector<bf16> dq3 = dqStart, dk3 = dkStart, dv3 = toBf16(dv0);
        std::vector<bf16> gbuf3((size_t)N * H * gRow, bf16{0x7fc0});
        std::vector<bf16> rounded(2 * states.size(), bf16{0x7fc0});
        const int shared = roundedSharedBytes(f, dh);
        kern.roundedStates(K.data(), V.data(), (long long)H * dh, dh, dh, 1, rounded.data(), L, H, f, dh, 0);
        emuLaunch(kern.chunks(L, H), b4j::LMM_THREADS, shared, [&] {
            if (narrow) {
                b4j_bf16::linearAttentionMmaRoundedBackwardQ72_bf16(Q.data(), K.data(), V.data(), DOUT.data(),
                                                                    rounded.data(), gbuf3.data(), dq3.data(), L, H,
                                                                    f, dh, eps);
            } else {
                b4j_bf16::linearAttentionMmaRoundedBackwardQ120_bf16(Q.data(), K.data(), V.data(), DOUT.data(),
                                                                     rounded.data(), gbuf3.data(), dq3.data(), L, H,
                                                                     f, dh, eps);
            }
        });
        std::fill(rounded.begin(), rounded.end(), bf16{0x7fc0});
        kern.roundedStates(Q.data(), gbuf3.data(), (long long)H * gRow, gRow, gRow, 0, rounded.data(), L, H, f, dh, 1);
        emuLaunch(kern.chunks(L, H), b4j::LMM_THREADS, shared, [&] {
            if (narrow) {
                b4j_bf16::linearAttentionMmaRoundedBackwardKV72_bf16(Q.data(), K.data(), V.data(), gbuf3.data(),
                                                                     rounded.data(), dk3.data(), dv3.data(), L, H, f,
                                                                     dh);
            } else {
                b4j_bf16::linearAttentionMmaRoundedBackwardKV120_bf16(Q.data(), K.data(), V.data(), gbuf3.data(),
                                                                      rounded.data(), dk3.data(), dv3.data(), L, H,
                                                                      f, dh);
            }
        });
        printf("rounded-state backward against the chunk kernels, elements that differ: dq %zu dk %zu dv %zu\n",
               differ(DQ, dq3), differ(DK, dk3), differ(DV, dv3));
    }

    // the scan kernels, where they serve the shape: the same numbers bit for bit
    if (epad <= b4j::LMS_MAX_FEATURES && dh <= b4j::LMS_MAX_HEAD) {
        const uint3v grid{(unsigned)H, (unsigned)B, 1};
        std::vector<bf16> out2(vs), dq2 = dqStart, dk2 = dkStart, dv2 = toBf16(dv0);
        std::vector<bf16> gbuf2((size_t)N * H * gRow, bf16{0x7fc0});
        emuLaunch(grid, b4j::LMS_THREADS, scanSharedBytes(f, dh, false), [&] {
            b4j_bf16::linearAttentionMmaScanForward_bf16(Q.data(), K.data(), V.data(), out2.data(), L, H, f, dh, eps);
        });
        emuLaunch(grid, b4j::LMS_THREADS, scanSharedBytes(f, dh, true), [&] {
            b4j_bf16::linearAttentionMmaScanBackwardQ_bf16(Q.data(), K.data(), V.data(), DOUT.data(), gbuf2.data(),
                                                           dq2.data(), L, H, f, dh, eps);
        });
        emuLaunch(grid, b4j::LMS_THREADS, scanSharedBytes(f, dh, true), [&] {
            b4j_bf16::linearAttentionMmaScanBackwardKV_bf16(Q.data(), K.data(), V.data(), gbuf2.data(), dk2.data(),
                                                            dv2.data(), L, H, f, dh);
        });
        printf("scan kernels against the chunk kernels, elements that differ: out %zu dq %zu dk %zu dv %zu\n",
               differ(OUT, out2), differ(DQ, dq2), differ(DK, dk2), differ(DV, dv2));
    }

    if (split > 1) {  // the copies' gradients summed into the given dq and dk
        std::vector<bf16> dqWhole = toBf16(dq0), dkWhole = toBf16(dk0);
        emuLaunch({(unsigned)((wholeQk + 255) / 256), 1, 1}, 256, 0, [&] {
            b4j_bf16::linearHeadSum_bf16(DQ.data(), DK.data(), dqWhole.data(), dkWhole.data(), N, whole.heads, split,
                                         f);
        });
        DQ = dqWhole;
        DK = dkWhole;
    }
    std::vector<double> out(vs), dq(dq0.begin(), dq0.end()), dk(dk0.begin(), dk0.end()), dv(dv0.begin(), dv0.end());
    reference(whole, eps, q, k, v, dout, out, dq, dk, dv);
    const double unit = 256;
    printf("batch %d, seqLen %4d, heads %d, f %2d, dh %3d (%d heads of %d), seed %u, in units of 2^-8: largest out"
           " %.2f dq %.2f dk %.2f dv %.2f; rms out %.2f dq %.2f dk %.2f dv %.2f\n",
           B, L, whole.heads, f, whole.dh, H, dh, seed, largestError(out, toFloat(OUT)) * unit, largestError(dq, toFloat(DQ)) * unit,
           largestError(dk, toFloat(DK)) * unit, largestError(dv, toFloat(DV)) * unit,
           rmsError(out, toFloat(OUT)) * unit, rmsError(dq, toFloat(DQ)) * unit, rmsError(dk, toFloat(DK)) * unit,
           rmsError(dv, toFloat(DV)) * unit);
    fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
    const unsigned seed = argc > 1 ? (unsigned)atoi(argv[1]) : 1;
    if (argc > 6) {
        run({atoi(argv[2]), atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), atoi(argv[6])}, seed,
            argc > 7 ? atoi(argv[7]) : 1);
        return 0;
    }
    // ragged last chunks (100 = 64 + 36, 129 = 2 x 64 + 1), both head-dim variants, a single token, a head of 16,
    // eleven chunks
    const Shape shapes[] = {{2, 100, 2, 16, 64}, {2, 129, 1, 16, 112}, {2, 129, 1, 32, 64}, {2, 100, 1, 32, 112},
                            {2, 1, 1, 16, 64},   {2, 19, 2, 16, 16},   {1, 70, 1, 8, 24},   {1, 700, 1, 16, 64},
                            {3, 65, 1, 16, 72},  {2, 130, 1, 8, 64}};
    for (const Shape& sh : shapes) run(sh, seed);
    return 0;
}
