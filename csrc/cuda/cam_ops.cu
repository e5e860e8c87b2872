// CUDA kernels of the actcam ops. Each launches on the current stream of the inputs'
// device and checks the launch; every formula comes from ../kernel_math.h, shared with
// the CPU kernels.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "../checks.h"
#include "../jet_colormap.h"
#include "../kernel_math.h"

namespace actcam {
namespace {

struct Strides4 {
  int64_t b, k, h, w;
};

Strides4 strides4(const at::Tensor& t) { return {t.stride(0), t.stride(1), t.stride(2), t.stride(3)}; }

// ---------------------------------------------------------------------------------------
// cam: one block per map. The low-resolution map lives in shared memory when it fits (the
// usual 7x7 .. 56x56 target layers), else in a global scratch buffer; the block then writes
// the resized map, reduces its min/max, and normalises its own output (still in L2) in place.

constexpr int kCamThreads = 512;
constexpr int kWarps = kCamThreads / 32;
// 48 KiB is the most shared memory a block gets without opting in; leave 1 KiB for the
// kernel's static reduction buffers.
constexpr int kMaxLowInShared = (47 * 1024) / sizeof(float) - kCamThreads;

__device__ __forceinline__ float min_nan_free(float a, float b) { return b < a ? b : a; }
__device__ __forceinline__ float max_nan_free(float a, float b) { return b > a ? b : a; }

template <typename scalar_t>
__global__ void __launch_bounds__(kCamThreads)
    cam_kernel(const scalar_t* __restrict__ A, Strides4 sa, const float* __restrict__ weights, int C, int K, int h,
               int w, int H, int W, float scale_y, float scale_x, bool relu, bool normalize,
               float* __restrict__ scratch, float* __restrict__ out) {
  extern __shared__ float smem[];  // [kCamThreads] partial sums, then the low-res map if it fits
  __shared__ float red_lo[kWarps], red_hi[kWarps];
  __shared__ int red_non_finite[kWarps];

  const int64_t m = blockIdx.x;
  const int hw = h * w;
  float* partial = smem;
  float* low = scratch == nullptr ? smem + kCamThreads : scratch + m * hw;
  const float* wt = weights + m * K;
  const scalar_t* a = A + (m / C) * sa.b;

  // 1. Weighted channel sum. A map with fewer pixels than threads splits K into slices so
  // every thread works; slices are added in a fixed order, so the result is deterministic.
  const int slices = hw >= kCamThreads ? 1 : kCamThreads / hw;
  if (slices == 1) {
    for (int p = threadIdx.x; p < hw; p += kCamThreads) {
      const scalar_t* ap = a + (p / w) * sa.h + (p % w) * sa.w;
      float acc = 0.f;
      for (int k = 0; k < K; ++k) acc += wt[k] * static_cast<float>(ap[k * sa.k]);
      low[p] = relu && acc < 0.f ? 0.f : acc;
    }
  } else {
    const int p = threadIdx.x % hw, s = threadIdx.x / hw;
    if (s < slices) {
      const scalar_t* ap = a + (p / w) * sa.h + (p % w) * sa.w;
      float acc = 0.f;
      for (int k = s; k < K; k += slices) acc += wt[k] * static_cast<float>(ap[k * sa.k]);
      partial[s * hw + p] = acc;
    }
    __syncthreads();
    for (int q = threadIdx.x; q < hw; q += kCamThreads) {
      float acc = 0.f;
      for (int j = 0; j < slices; ++j) acc += partial[j * hw + q];
      low[q] = relu && acc < 0.f ? 0.f : acc;
    }
  }
  __syncthreads();

  // 2. Bilinear resize (horizontal then vertical, as on the CPU) with min/max/non-finite tracking.
  float* o = out + m * H * W;
  float lo = INFINITY, hi = -INFINITY;
  int non_finite = 0;
  for (int q = threadIdx.x; q < H * W; q += kCamThreads) {
    const BilinearTap ty = bilinear_tap(scale_y, q / W, h);
    const BilinearTap tx = bilinear_tap(scale_x, q % W, w);
    const float* r0 = low + ty.i0 * w;
    const float* r1 = low + ty.i1 * w;
    const float v0 = tx.l0 * r0[tx.i0] + tx.l1 * r0[tx.i1];
    const float v1 = tx.l0 * r1[tx.i0] + tx.l1 * r1[tx.i1];
    const float v = ty.l0 * v0 + ty.l1 * v1;
    o[q] = v;
    lo = min_nan_free(lo, v);
    hi = max_nan_free(hi, v);
    non_finite |= (v - v) != 0.f;  // v - v is 0 for finite v, NaN for NaN and inf
  }
  if (!normalize) return;

  // 3. Block-wide min/max/non-finite flag, then normalise this block's own map in place.
  for (int off = 16; off > 0; off >>= 1) {
    lo = min_nan_free(lo, __shfl_xor_sync(0xffffffffu, lo, off));
    hi = max_nan_free(hi, __shfl_xor_sync(0xffffffffu, hi, off));
    non_finite |= __shfl_xor_sync(0xffffffffu, non_finite, off);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    red_lo[warp] = lo;
    red_hi[warp] = hi;
    red_non_finite[warp] = non_finite;
  }
  __syncthreads();
  lo = red_lo[0];
  hi = red_hi[0];
  non_finite = red_non_finite[0];
  for (int j = 1; j < kWarps; ++j) {
    lo = min_nan_free(lo, red_lo[j]);
    hi = max_nan_free(hi, red_hi[j]);
    non_finite |= red_non_finite[j];
  }
  const bool constant = is_constant_map(lo, hi);
  const MinMaxScale mm = minmax_scale(lo, hi);  // as on the CPU: a multiply per pixel, not a division
  for (int q = threadIdx.x; q < H * W; q += kCamThreads) {
    o[q] = non_finite ? NAN : (constant ? 0.f : minmax_apply(mm, o[q]));
  }
}

at::Tensor cam_cuda(const at::Tensor& activations, const at::Tensor& weights, at::IntArrayRef size, bool relu,
                    bool normalize) {
  const CamShape s = check_cam(activations, weights, size);
  TORCH_CHECK_VALUE(s.H * s.W < (int64_t(1) << 31) && s.h * s.w < (int64_t(1) << 31) && s.K < (int64_t(1) << 31),
                    "actcam: cam's maps must have fewer than 2^31 pixels and channels");
  c10::cuda::CUDAGuard guard(activations.device());
  auto out_sizes = s.per_class ? std::vector<int64_t>{s.B, s.C, s.H, s.W} : std::vector<int64_t>{s.B, s.H, s.W};
  at::Tensor out = at::empty(out_sizes, activations.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const at::Tensor wf = weights.to(at::kFloat).contiguous();
  const int64_t hw = s.h * s.w;
  const bool low_in_shared = hw <= kMaxLowInShared;
  at::Tensor scratch;
  if (!low_in_shared) scratch = at::empty({s.B * s.C, hw}, out.options());
  const size_t shared_bytes = (kCamThreads + (low_in_shared ? hw : 0)) * sizeof(float);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  ACTCAM_DISPATCH_FLOATS(activations.scalar_type(), "actcam::cam", [&] {
    cam_kernel<scalar_t><<<static_cast<unsigned>(s.B * s.C), kCamThreads, shared_bytes, stream>>>(
        activations.const_data_ptr<scalar_t>(), strides4(activations), wf.const_data_ptr<float>(),
        static_cast<int>(s.C), static_cast<int>(s.K), static_cast<int>(s.h), static_cast<int>(s.w),
        static_cast<int>(s.H), static_cast<int>(s.W), bilinear_scale(s.h, s.H), bilinear_scale(s.w, s.W), relu,
        normalize, low_in_shared ? nullptr : scratch.data_ptr<float>(), out.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// gradcampp_weights: one warp per (image, channel) row; both tensors are read once.

constexpr int kRowThreads = 256;

__device__ __forceinline__ float warp_sum(float v) {
  // Butterfly: every lane ends with the same total, bit for bit.
  for (int off = 16; off > 0; off >>= 1) v += __shfl_xor_sync(0xffffffffu, v, off);
  return v;
}

template <typename scalar_t>
__global__ void __launch_bounds__(kRowThreads)
    gradcampp_kernel(const scalar_t* __restrict__ A, Strides4 sa, const scalar_t* __restrict__ G, Strides4 sg,
                     int64_t rows, int64_t K, int h, int w, float* __restrict__ out) {
  const int64_t row = static_cast<int64_t>(blockIdx.x) * (kRowThreads / 32) + threadIdx.x / 32;
  if (row >= rows) return;  // the whole warp leaves together
  const int lane = threadIdx.x % 32;
  const int64_t b = row / K, k = row % K;
  const scalar_t* a = A + b * sa.b + k * sa.k;
  const scalar_t* g = G + b * sg.b + k * sg.k;
  const int hw = h * w;
  float sum_a = 0.f;
  for (int p = lane; p < hw; p += 32) sum_a += static_cast<float>(a[(p / w) * sa.h + (p % w) * sa.w]);
  sum_a = warp_sum(sum_a);
  // Eq. 19: alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), 0 where the denominator is 0.
  float acc = 0.f;
  for (int p = lane; p < hw; p += 32) {
    const float gv = static_cast<float>(g[(p / w) * sg.h + (p % w) * sg.w]);
    const float g2 = gv * gv;
    const float denom = 2.f * g2 + sum_a * g2 * gv;
    const float alpha = denom != 0.f ? g2 / denom : 0.f;
    acc += alpha * (gv < 0.f ? 0.f : gv);
  }
  acc = warp_sum(acc);
  if (lane == 0) out[row] = acc;
}

at::Tensor gradcampp_weights_cuda(const at::Tensor& activations, const at::Tensor& grads) {
  check_gradcampp(activations, grads);
  c10::cuda::CUDAGuard guard(activations.device());
  at::Tensor out = at::empty({activations.size(0), activations.size(1)}, activations.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  const int h = static_cast<int>(activations.size(2)), w = static_cast<int>(activations.size(3));
  const int64_t rows = out.numel();
  const int64_t blocks = (rows + kRowThreads / 32 - 1) / (kRowThreads / 32);
  const auto stream = c10::cuda::getCurrentCUDAStream();
  ACTCAM_DISPATCH_FLOATS(activations.scalar_type(), "actcam::gradcampp_weights", [&] {
    gradcampp_kernel<scalar_t><<<static_cast<unsigned>(blocks), kRowThreads, 0, stream>>>(
        activations.const_data_ptr<scalar_t>(), strides4(activations), grads.const_data_ptr<scalar_t>(),
        strides4(grads), rows, activations.size(1), h, w, out.data_ptr<float>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// overlay: one block per image row; the colour table is staged in shared memory because
// neighbouring pixels read different entries (a __constant__ read would serialise them).

constexpr int kOverlayThreads = 128;
__constant__ uint8_t kJetRGBDevice[256 * 3] = ACTCAM_JET_RGB_TABLE;

template <typename scalar_t>
__global__ void __launch_bounds__(kOverlayThreads)
    overlay_kernel(const scalar_t* __restrict__ maps, int64_t mb, int64_t mh, int64_t mw,
                   const uint8_t* __restrict__ images, int64_t ib, int64_t ih, int64_t iw, int64_t ic, int64_t H,
                   int64_t W, float w_heat, float w_image, uint8_t* __restrict__ out) {
  __shared__ uint8_t lut[256 * 3];
  for (int i = threadIdx.x; i < 256 * 3; i += kOverlayThreads) lut[i] = kJetRGBDevice[i];
  __syncthreads();
  const int64_t row = blockIdx.x, b = row / H, y = row % H;
  const scalar_t* m = maps + b * mb + y * mh;
  const uint8_t* img = images + b * ib + y * ih;
  uint8_t* o = out + row * W * 3;
  for (int64_t x = threadIdx.x; x < W; x += kOverlayThreads) {
    const uint8_t* heat = lut + 3 * jet_index(static_cast<float>(m[x * mw]));
    const uint8_t* px = img + x * iw;
    for (int c = 0; c < 3; ++c) o[3 * x + c] = blend_u8(heat[c], px[c * ic], w_heat, w_image);
  }
}

at::Tensor overlay_cuda(const at::Tensor& maps, const at::Tensor& images, double image_weight) {
  check_overlay(maps, images, image_weight);
  c10::cuda::CUDAGuard guard(maps.device());
  at::Tensor out = at::empty({maps.size(0), maps.size(1), maps.size(2), 3}, images.options());
  if (out.numel() == 0) return out;
  const int64_t rows = maps.size(0) * maps.size(1);
  TORCH_CHECK_VALUE(rows < (int64_t(1) << 31), "actcam: overlay supports fewer than 2^31 image rows");
  const auto stream = c10::cuda::getCurrentCUDAStream();
  ACTCAM_DISPATCH_FLOATS(maps.scalar_type(), "actcam::overlay", [&] {
    overlay_kernel<scalar_t><<<static_cast<unsigned>(rows), kOverlayThreads, 0, stream>>>(
        maps.const_data_ptr<scalar_t>(), maps.stride(0), maps.stride(1), maps.stride(2),
        images.const_data_ptr<uint8_t>(), images.stride(0), images.stride(1), images.stride(2), images.stride(3),
        maps.size(1), maps.size(2), static_cast<float>(1.0 - image_weight), static_cast<float>(image_weight),
        out.data_ptr<uint8_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(actcam, CUDA, m) {
  m.impl("cam", &cam_cuda);
  m.impl("gradcampp_weights", &gradcampp_weights_cuda);
  m.impl("overlay", &overlay_cuda);
}

}  // namespace actcam
