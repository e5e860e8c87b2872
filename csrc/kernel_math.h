// Per-element formulas shared by the CPU and CUDA kernels, so both backends compute the
// same float operations in the same order.
//
// Bilinear taps: source indices and weights of resizing with F.interpolate(mode="bilinear",
// align_corners=False) semantics, computed in the accumulation type exactly as ATen's upsample
// kernels do (area_pixel_compute_scale / area_pixel_compute_source_index in
// ATen/native/UpSample.h), so our maps match the torch chain to rounding, for up- and
// downsampling alike.
#pragma once

#include <cfloat>
#include <cmath>
#include <cstdint>

#if defined(__CUDACC__)
#define ACTCAM_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define ACTCAM_HOST_DEVICE inline
#endif

namespace actcam {

// Limits of the two accumulation types (usable in device code, unlike std::numeric_limits
// without --expt-relaxed-constexpr).
template <typename T>
struct FloatLimits;
template <>
struct FloatLimits<float> {
  static constexpr float min_normal = FLT_MIN, max_finite = FLT_MAX;
};
template <>
struct FloatLimits<double> {
  static constexpr double min_normal = DBL_MIN, max_finite = DBL_MAX;
};

// T is the accumulation type: float for float32/float16/bfloat16 inputs (and on CUDA),
// double for float64 inputs on the CPU, as ATen's opmath_type.
template <typename T>
struct BilinearTapT {
  int64_t i0, i1;  // the two source indices (equal at the border)
  T l0, l1;        // their weights, l0 + l1 = 1
};
using BilinearTap = BilinearTapT<float>;

// scale = in_size / out_size, as ATen computes it when no scale_factor is given.
template <typename T = float>
ACTCAM_HOST_DEVICE T bilinear_scale(int64_t in_size, int64_t out_size) {
  return static_cast<T>(in_size) / static_cast<T>(out_size);
}

template <typename T>
ACTCAM_HOST_DEVICE BilinearTapT<T> bilinear_tap(T scale, int64_t dst, int64_t in_size) {
  T src = scale * (static_cast<T>(dst) + T(0.5)) - T(0.5);
  if (src < T(0)) src = T(0);
  int64_t i0 = static_cast<int64_t>(src);  // src >= 0, so truncation is floor
  if (i0 > in_size - 1) i0 = in_size - 1;
  T l1 = src - static_cast<T>(i0);
  l1 = l1 < T(0) ? T(0) : (l1 > T(1) ? T(1) : l1);
  BilinearTapT<T> t;
  t.i0 = i0;
  t.i1 = i0 < in_size - 1 ? i0 + 1 : i0;
  t.l0 = T(1) - l1;
  t.l1 = l1;
  return t;
}

// Min-max normalisation treats a map as constant when its spread is within float rounding
// of its largest magnitude (docs/ops.md): such a map becomes zeros instead of amplified noise.
// A subnormal spread counts as constant too: its reciprocal would overflow to inf, and
// (v - lo) * inf turns the pixel at the minimum into 0 * inf = NaN.
template <typename T>
ACTCAM_HOST_DEVICE bool is_constant_map(T lo, T hi) {
  const T spread = hi - lo;
  const T a = lo < T(0) ? -lo : lo, b = hi < T(0) ? -hi : hi;
  return spread <= T(1e-6) * (a > b ? a : b) || spread < FloatLimits<T>::min_normal;
}

// v -> (v * scale - shift) * inv: (v - lo) / (hi - lo) for a finite map that is not constant,
// as a multiplication by the reciprocal. When hi - lo exceeds the float range (lo and hi of
// opposite signs near the limits), every term is taken at half scale, where it is finite.
// d(result)/dv = scale * inv = 1 / (hi - lo).
template <typename T>
struct MinMaxScaleT {
  T scale, shift, inv;
};
using MinMaxScale = MinMaxScaleT<float>;

template <typename T>
ACTCAM_HOST_DEVICE MinMaxScaleT<T> minmax_scale(T lo, T hi) {
  const T scale = hi - lo > FloatLimits<T>::max_finite ? T(0.5) : T(1);  // the spread overflowed to inf
  MinMaxScaleT<T> m;
  m.scale = scale;
  m.shift = lo * scale;
  m.inv = T(1) / (hi * scale - lo * scale);
  return m;
}

template <typename T>
ACTCAM_HOST_DEVICE T minmax_apply(const MinMaxScaleT<T>& m, T v) {
  return (v * m.scale - m.shift) * m.inv;
}

// Colour index floor(255 * v) clamped to 0..255: what np.uint8(255 * map) gives for maps in
// [0, 1]. NaN (and anything negative) maps to 0, +inf to 255.
ACTCAM_HOST_DEVICE int jet_index(float v) {
  const float s = v * 255.f;
  return s >= 0.f ? (s < 255.f ? static_cast<int>(s) : 255) : 0;
}

// (1 - w) * heat + w * image rounded half to even (cvRound in cv2.addWeighted's
// saturate_cast). With w in [0, 1] the blend lies in [0, 255], so no saturation is needed,
// and adding then subtracting 1.5 * 2^23 rounds it half to even in the default rounding
// mode: the same result as nearbyintf, which x86-64 without SSE4.1 turns into a slow libm
// call that saves and restores the floating-point environment.
ACTCAM_HOST_DEVICE uint8_t blend_u8(uint8_t heat, uint8_t image, float w_heat, float w_image) {
  const float magic = 12582912.f;  // 1.5 * 2^23
  // Compilers keep (x + magic) - magic as written: reassociating it needs -ffast-math.
#if defined(__CUDA_ARCH__)
  // Explicitly rounded products: nvcc would otherwise fuse them into an FMA and round
  // differently from the CPU kernel and cv2 at ties.
  const float blend = __fadd_rn(__fmul_rn(static_cast<float>(heat), w_heat), __fmul_rn(static_cast<float>(image), w_image));
#else
  const float blend = static_cast<float>(heat) * w_heat + static_cast<float>(image) * w_image;
#endif
  const float shifted = blend + magic;
  return static_cast<uint8_t>(shifted - magic);
}

}  // namespace actcam
