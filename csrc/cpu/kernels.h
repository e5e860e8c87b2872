// The interface between the CPU ops (cam_ops.cpp: checks, plans, threads) and the inner loops
// (isa/kernels.cpp), which are compiled once per CPU capability with that capability's flags
// and chosen at load time (dispatch.cpp). Only plain structs and pointers cross it: the
// per-capability translation units include no ATen header, so no inline function of torch's
// is ever compiled with instructions the running CPU might lack.
#pragma once

#include <cstdint>

#include "../kernel_math.h"

namespace actcam {
namespace cpu {

// How the low-resolution map of an image is made from its inputs (docs/ops.md).
enum Mode : int {
  kWeights = 0,         // sum_k w_k A_k with given weights (cam)
  kGradCam,             // w_k = mean_ij g_kij
  kXGradCam,            // w_k = sum_ij g_kij A_kij / sum_ij A_kij, 0 where that denominator is 0
  kHiResCam,            // sum_k g_k * A_k
  kGradCamElementwise,  // sum_k relu(g_k * A_k)
  kLayerCam,            // sum_k relu(g_k) * A_k
};

// The element type of the activations and gradients (float16 and bfloat16 as their bits).
enum class Src : int { kFloat = 0, kHalf = 1, kBFloat16 = 2, kDouble = 3 };

// Channels summed per pass over a plane: their terms are added to the running sum one after
// the other, in channel order, while it stays in a register.
constexpr int64_t kChannelGroup = 8;
// Classes whose maps are made in one pass over an image's activations.
constexpr int64_t kClassBlock = 16;

// The low-resolution maps of one image, for classes [c0, c0 + cn) and pixels [p0, p1) of the
// flattened h x w plane. Element (k, y, x) of the activations is at a + k*ak + y*ah + x*aw
// (element strides); of class c's gradients at g + c*gc + k*gk + y*gh + x*gw.
template <typename T>
struct LowresJob {
  int mode;
  Src src;
  const void* a;
  int64_t ak, ah, aw;
  const void* g;
  int64_t gc, gk, gh, gw;
  // kWeights: weights[(c - c0) * wc + k]. kGradCam / kXGradCam: the channel weights computed
  // by channel_weights, or nullptr to compute them here (then [p0, p1) must be the whole plane).
  const T* weights;
  int64_t wc;
  int64_t c0, cn, K, h, w;
  int64_t p0, p1;
  T* low;      // low[(c - c0) * h * w + p]
  T* scratch;  // lowres_scratch_size elements
};

// Scratch (elements of T) one lowres or channel_weights call needs for n pixels.
inline int64_t lowres_scratch_size(int64_t n) { return 2 * kChannelGroup * n + kChannelGroup; }

// The sizes-only part of a map's resize (cam_ops.cpp's CamPlan), as arrays.
template <typename T>
struct MapPlanView {
  int64_t h, w, H, W, n_rows, n_extremes;
  const BilinearTapT<T>* xtaps;      // W horizontal taps
  const BilinearTapT<T>* slot_taps;  // H vertical taps, i0 and i1 numbering resized rows
  const int64_t* src_rows;           // resized row j is source row src_rows[j]
  const int64_t* extremes;           // the output rows that bound the map's range
};

template <typename T>
struct MapRange {
  T lo, hi;
  bool non_finite;
};

template <typename T>
struct Ops {
  void (*lowres)(const LowresJob<T>& job);
  // weights[(c - c0) * K + k] for the job's classes and channels [k0, k1) (kGradCam / kXGradCam).
  void (*channel_weights)(const LowresJob<T>& job, int64_t k0, int64_t k1, T* weights);
  void (*relu)(T* v, int64_t n);  // v = max(v, 0), NaN kept
  // rows[j * W + X] = resized row j (j in [j0, j1)) of the low-resolution map.
  void (*resize_rows)(const MapPlanView<T>& p, const T* low, T* rows, int64_t j0, int64_t j1);
  // min, max and "holds a NaN or inf" of the resized map, from its extreme rows.
  MapRange<T> (*range)(const MapPlanView<T>& p, const T* rows);
  // Output rows [Y0, Y1), min-max normalised by mm (then clamped to [0, 1]) unless mm is null.
  // With stream, written with streaming (cache-bypassing) stores where the capability has
  // them: the same values, for an output too big to stay in the caches for its reader.
  void (*write_rows)(const MapPlanView<T>& p, const T* rows, const MinMaxScaleT<T>* mm, T* out, int64_t Y0,
                     int64_t Y1, bool stream);
};

struct KernelTable {
  const char* name;
  Ops<float> f32;
  Ops<double> f64;
  // out[i] = blend_u8(heat[i], image[i], w_heat, w_image)
  void (*blend_span)(const uint8_t* heat, const uint8_t* image, uint8_t* out, int64_t n, float w_heat,
                     float w_image);
};

// Each capability's table (defined in isa/kernels.cpp, compiled once per capability).
namespace default_ {
const KernelTable& table();
}
#if defined(ACTCAM_HAVE_AVX2)
namespace avx2 {
const KernelTable& table();
}
#endif
#if defined(ACTCAM_HAVE_AVX512)
namespace avx512 {
const KernelTable& table();
}
#endif

// The live table (dispatch.cpp): chosen on first use from ACTCAM_CPU_CAPABILITY and the CPU.
const KernelTable& kernels();

template <typename T>
const Ops<T>& ops();
template <>
inline const Ops<float>& ops<float>() {
  return kernels().f32;
}
template <>
inline const Ops<double>& ops<double>() {
  return kernels().f64;
}

}  // namespace cpu
}  // namespace actcam
