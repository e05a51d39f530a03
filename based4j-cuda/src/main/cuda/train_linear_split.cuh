// The head split of Taylor linear attention training (included by based4j_kernels.cu; launched by
// io.based4j.cuda.MixerTrainKernels, bf16 only): linear attention separates over the value columns,
// out[:, j] = phi(q).S[:, j] / (phi(q).z + eps) with z independent of j, so a head of dh value columns is exactly s
// heads of dh / s columns that share its q and k. v, out, dout and dv of H heads of dh are already the arrays of
// H s heads of dh / s ([N, H dh] = [N, (H s) (dh / s)]); q and k are repeated for the H s heads, and the gradients of
// the copies summed back:
//   repeat   qq[r, (h s + j) f + c] = q[r, h f + c], the same for k (and the copies' gradients dqq, dkk zeroed)
//   sum      dq[r, h f + c] += sum_j dqq[r, (h s + j) f + c], the same for dk
// for every row r < n, head h < H, copy j < s and feature c < f. Both are elementwise (grid-strided), one thread per
// element of qq (repeat) or of dq (sum).
#pragma once

namespace b4j {

/** The repeat; where dqq is not null, dqq and dkk (each of qq's shape) are zeroed as well. */
template <typename A>
__device__ void linearHeadRepeat_impl(const A* q, const A* k, A* qq, A* kk, A* dqq, A* dkk, i64 n, int H, int s,
                                      int f) {
    const i64 width = (i64)H * s * f;  // of a row of qq
    const i64 total = n * width;
    const A zero = fromF<A>(0.0f);
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 r = idx / width;
        const int col = (int)(idx - r * width);
        const int copy = col / f;  // h s + j
        const int c = col - copy * f;
        const i64 from = r * H * f + (i64)(copy / s) * f + c;
        qq[idx] = q[from];
        kk[idx] = k[from];
        if (dqq != nullptr) {
            dqq[idx] = zero;
            dkk[idx] = zero;
        }
    }
}

/**
 * The sum: the s copies' gradients added in float32 in order of j, then added to dq (dk) and rounded once:
 * dq = A(dq + (dqq_0 + ... + dqq_{s-1})).
 */
template <typename A>
__device__ void linearHeadSum_impl(const A* dqq, const A* dkk, A* dq, A* dk, i64 n, int H, int s, int f) {
    const i64 width = (i64)H * f;  // of a row of dq
    const i64 total = n * width;
    for (i64 idx = globalThread(); idx < total; idx += globalStride()) {
        const i64 r = idx / width;
        const int col = (int)(idx - r * width);
        const int h = col / f;
        const int c = col - h * f;
        const i64 first = (r * H + h) * s * f + c;  // (r, copy h s + 0, c) in the [n, H s f] copies
        float sq = 0.0f;
        float sk = 0.0f;
        for (int j = 0; j < s; j++) {
            sq += toF(dqq[first + (i64)j * f]);
            sk += toF(dkk[first + (i64)j * f]);
        }
        dq[idx] = fromF<A>(toF(dq[idx]) + sq);
        dk[idx] = fromF<A>(toF(dk[idx]) + sk);
    }
}

}  // namespace b4j

// bf16 only (float32 keeps whole heads): MixerTrainKernels launches them elementwise.
namespace b4j_bf16 {
extern "C" __global__ void __launch_bounds__(256)
    linearHeadRepeat_bf16(const A* q, const A* k, A* qq, A* kk, A* dqq, A* dkk, long long n, int H, int s, int f) {
    b4jPdlWait();
    b4j::linearHeadRepeat_impl<A>(q, k, qq, kk, dqq, dkk, n, H, s, f);
}
extern "C" __global__ void __launch_bounds__(256)
    linearHeadSum_bf16(const A* dqq, const A* dkk, A* dq, A* dk, long long n, int H, int s, int f) { b4jPdlWait();
    b4j::linearHeadSum_impl<A>(dqq, dkk, dq, dk, n, H, s, f);
}
}  // namespace b4j_bf16
