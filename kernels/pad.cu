// pad.cu — explicit zero padding and its adjoint (cropping) of NCHW tensors, so that cuDNN
// convolutions run with symmetric padding only: TF SAME for k=5, s=2 pads 1 before and 2 after;
// we pad 1 extra row/column after explicitly (pad_nchw) and give cuDNN pre = post = 1. The
// gradient of the explicit pad is a crop (crop_nchw). Python launcher:
// rawgan/backend/cuda/cudnn_conv.py (pad2d, crop2d). Reference: numpy.pad / slicing.
//
// Launch: grid-stride, grid = min(ceil(n / 256), block cap), block = 256, shared_mem = 0.
// Napkin math: pad_nchw reads N·C·H·W and writes N·C·Hp·Wp floats; crop_nchw reads and writes
// N·C·H·W floats (the kept window). Memory-bound: 8 bytes per output element.

// Flat index i of an (NC, H, W) array -> (nc, h, w): returns nc, stores h and w.
__device__ __forceinline__ long long split_index(long long i, int H, int W, int* h, int* w)
{
    *w = (int)(i % W);
    const long long rest = i / W;
    *h = (int)(rest % H);
    return rest / H;
}

// xp (NC, Hp, Wp) = x (NC, H, W) placed at row `top`, column `left`; zeros elsewhere.
extern "C" __global__ void pad_nchw(const float* __restrict__ x, float* __restrict__ xp,
                                    int NC, int H, int W, int Hp, int Wp, int top, int left)
{
    const long long n = (long long)NC * Hp * Wp;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int hp, wp;
        const long long nc = split_index(i, Hp, Wp, &hp, &wp);
        const int h = hp - top, w = wp - left;
        xp[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : 0.0f;
    }
}

// x (NC, H, W) = xp (NC, Hp, Wp)[:, top:top + H, left:left + W] (the adjoint of pad_nchw).
extern "C" __global__ void crop_nchw(const float* __restrict__ xp, float* __restrict__ x,
                                     int NC, int H, int W, int Hp, int Wp, int top, int left)
{
    const long long n = (long long)NC * H * W;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)blockDim.x * gridDim.x) {
        int h, w;
        const long long nc = split_index(i, H, W, &h, &w);
        x[i] = xp[(nc * Hp + h + top) * Wp + w + left];
    }
}
