// conv.cu — the data-movement half of convolution by im2col + GEMM (the GEMMs are cuBLAS through
// cupy.matmul, or numpy.matmul in emulation).
// Python launcher: rawgan/backend/cuda/conv.py. Reference: rawgan/backend/reference/conv.py.
//
// Shapes (float32, contiguous): x (N, C, H, W); weights (K, C, R, S); y (N, K, P, Q);
// stride (sh, sw); padding (pt, pb, pl, pr) — only pt/pl enter the index math, P and Q carry pb/pr.
// The window matrix has rows (c, r, s) and columns (n, p, q):
//     cols[(c*R + r)*S + s][(n*P + p)*Q + q] = xpad[n, c, p*sh + r, q*sw + s]
//     fprop:  Y (K, N*P*Q) = W (K, C*R*S) @ cols           then swap_axes01 + bias -> y
//     wgrad:  dW = dY (K, N*P*Q) @ cols^T                  dY = swap_axes01(dy)
//     dgrad:  dcols = W^T @ dY,  dx = col2im(dcols)
// All sizes must be < 2^31 elements (checked by the launcher); indices are 32-bit.
//
// Launch (all three kernels): grid = min(ceil(total / 256), block cap), block = 256,
// shared_mem = 0; grid-stride loops over `total` work items (defined at each kernel).

// im2col (forward partner of col2im). One work item per (c, n, p, q) — total = C*N*P*Q — that
// copies its R*S window taps down column (n, p, q) of cols (Caffe's layout of the work: the index
// arithmetic is done once per R*S outputs; writes of neighbouring threads are neighbours).
// Taps that fall into the padding read 0.
extern "C" __global__ void im2col(const float* __restrict__ x, float* __restrict__ cols,
                                  int N, int C, int H, int W, int R, int S, int P, int Q,
                                  int sh, int sw, int pt, int pl)
{
    const int NPQ = N * P * Q;
    const int total = C * NPQ;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += blockDim.x * gridDim.x) {
        const int c = idx / NPQ, col = idx - c * NPQ;
        const int q = col % Q, p = (col / Q) % P, n = col / (P * Q);
        const int h0 = p * sh - pt, w0 = q * sw - pl;
        const float* xc = x + (n * C + c) * H * W;
        float* out = cols + c * R * S * NPQ + col;
        for (int r = 0; r < R; ++r) {
            const int h = h0 + r;
            for (int s = 0; s < S; ++s) {
                const int w = w0 + s;
                *out = (h >= 0 && h < H && w >= 0 && w < W) ? xc[h * W + w] : 0.0f;
                out += NPQ;
            }
        }
    }
}

// col2im (adjoint of im2col): dx[n, c, h, w] = sum of every dcols entry whose window tap reads
// xpad[n, c, h + pt, w + pl]. A gather — each thread owns one dx element and visits the output
// positions (p, q) whose window covers it, tap r = hp - p*sh, s = wp - q*sw — so there are no
// atomics and the result is deterministic. total = N*C*H*W. If bias is not null, bias[c] is added
// to every element of channel c (the transposed convolution's bias, ConvTranspose2d's forward:
// one launch instead of col2im + bias_add; the same single addition, so the same bits).
extern "C" __global__ void col2im(const float* __restrict__ dcols, const float* __restrict__ bias,
                                  float* __restrict__ dx,
                                  int N, int C, int H, int W, int R, int S, int P, int Q,
                                  int sh, int sw, int pt, int pl)
{
    const int NPQ = N * P * Q;
    const int total = N * C * H * W;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += blockDim.x * gridDim.x) {
        const int w = idx % W, h = (idx / W) % H, c = (idx / (W * H)) % C, n = idx / (W * H * C);
        const int hp = h + pt, wp = w + pl;  // position in the padded image
        // p*sh <= hp < p*sh + R  <=>  (hp - R)/sh < p <= hp/sh ; likewise for q.
        const int p0 = hp < R ? 0 : (hp - R) / sh + 1, p1 = min(hp / sh + 1, P);
        const int q0 = wp < S ? 0 : (wp - S) / sw + 1, q1 = min(wp / sw + 1, Q);
        float acc = 0.0f;
        for (int p = p0; p < p1; ++p) {
            const int r = hp - p * sh;
            for (int q = q0; q < q1; ++q) {
                const int s = wp - q * sw;
                acc += dcols[((c * R + r) * S + s) * NPQ + (n * P + p) * Q + q];
            }
        }
        dx[idx] = bias ? acc + bias[c] : acc;
    }
}

// swap_axes01: out (B, A, L) = in (A, B, L) with axes 0 and 1 swapped, plus bias[a] if bias is
// not null. fprop: Y (K, N, PQ) -> y (N, K, PQ) + b[k];  dgrad/wgrad: dy (N, K, PQ) -> dY (K, N, PQ).
// Iterates over the output, so writes are coalesced. total = A*B*L.
extern "C" __global__ void swap_axes01(const float* __restrict__ in, const float* __restrict__ bias,
                                       float* __restrict__ out, int A, int B, int L)
{
    const int total = A * B * L;
    for (int idx = blockIdx.x * blockDim.x + threadIdx.x; idx < total; idx += blockDim.x * gridDim.x) {
        const int l = idx % L, a = (idx / L) % A, b = idx / (L * A);
        const float v = in[(a * B + b) * L + l];
        out[idx] = bias ? v + bias[a] : v;
    }
}
