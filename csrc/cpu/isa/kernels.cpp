// The CPU inner loops, compiled once per capability (setup.py and CMakeLists.txt):
//
//   ACTCAM_CPU_CAPABILITY=default_  no extra flags: SSE2 on x86-64, portable code elsewhere
//   ACTCAM_CPU_CAPABILITY=avx2      -mavx2 -mfma -mf16c
//   ACTCAM_CPU_CAPABILITY=avx512    -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c
//
// always with -ffp-contract=off: every capability performs the same IEEE operations in the
// same order on every element (no fused multiply-add, no reassociation), so all of them
// return the same bits, and overlay stays byte-identical to cv2. Vector width changes only
// how many elements one instruction handles. Sums that are reduced across elements (the
// spatial sums of Grad-CAM and XGrad-CAM) use sixteen partial sums and a fixed tree whatever
// the width, for the same reason.
//
// Everything here has internal linkage except table(), in a namespace named after the
// capability, and no ATen header is included (kernels.h).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>
#include <utility>

#include "../kernels.h"

#if !defined(ACTCAM_CPU_CAPABILITY)
#error "compile with -DACTCAM_CPU_CAPABILITY=default_|avx2|avx512"
#endif

#if defined(ACTCAM_CPU_CAPABILITY_AVX512)
#if !(defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VL__) && defined(__AVX512DQ__) && \
      defined(__F16C__))
#error "the avx512 kernels need -mavx512f -mavx512bw -mavx512vl -mavx512dq -mfma -mf16c"
#endif
#define ACTCAM_VEC_AVX512 1
#if defined(__GNUC__) && !defined(__clang__)
// GCC 12 reports its own _mm512_undefined_* placeholders inside avx512fintrin.h.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>
#elif defined(ACTCAM_CPU_CAPABILITY_AVX2)
#if !(defined(__AVX2__) && defined(__F16C__))
#error "the avx2 kernels need -mavx2 -mfma -mf16c"
#endif
#define ACTCAM_VEC_AVX2 1
#include <immintrin.h>
#elif defined(__SSE2__) && !defined(ACTCAM_CPU_PORTABLE)
#define ACTCAM_VEC_SSE2 1
#include <emmintrin.h>
#else
#define ACTCAM_VEC_PORTABLE 1  // plain arrays the compiler vectorises (NEON on aarch64)
#endif

#if defined(__FP_FAST_FMA) || defined(__FAST_MATH__)
// GCC and clang define neither under -ffp-contract=off without -ffast-math; this guards the
// build flags, not the code.
#if defined(__FAST_MATH__)
#error "the kernels must not be compiled with -ffast-math"
#endif
#endif

namespace actcam {
namespace cpu {
namespace ACTCAM_CPU_CAPABILITY {
namespace {

// ---------------------------------------------------------------------------------------
// Scalars

struct F16 {};   // float16 bits
struct BF16 {};  // bfloat16 bits

template <typename S>
struct Storage {
  using type = S;
};
template <>
struct Storage<F16> {
  using type = uint16_t;
};
template <>
struct Storage<BF16> {
  using type = uint16_t;
};
template <typename S>
using Stor = typename Storage<S>::type;

inline float bits_to_float(uint32_t b) {
  float f;
  std::memcpy(&f, &b, 4);
  return f;
}
inline uint32_t float_to_bits(float f) {
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return b;
}

// IEEE half -> float, exactly (c10's fp16_ieee_to_fp32_value): no operand is subnormal, so
// flush-to-zero modes change nothing.
inline float half_to_float(uint16_t h) {
#if defined(__F16C__)
  return _cvtsh_ss(h);  // the same exact conversion in one instruction
#else
  const uint32_t w = static_cast<uint32_t>(h) << 16;
  const uint32_t sign = w & 0x80000000u;
  const uint32_t two_w = w + w;
  const float normalized = bits_to_float((two_w >> 4) + (0xE0u << 23)) * 0x1.0p-112f;
  const float denormalized = bits_to_float((two_w >> 17) | (126u << 23)) - 0.5f;
  const uint32_t r = two_w < (1u << 27) ? float_to_bits(denormalized) : float_to_bits(normalized);
  return bits_to_float(sign | r);
#endif
}
inline float bf16_to_float(uint16_t b) { return bits_to_float(static_cast<uint32_t>(b) << 16); }

template <typename S, typename T>
inline T load1(const Stor<S>* p) {
  if constexpr (std::is_same_v<S, F16>) {
    return static_cast<T>(half_to_float(*p));
  } else if constexpr (std::is_same_v<S, BF16>) {
    return static_cast<T>(bf16_to_float(*p));
  } else {
    return static_cast<T>(*p);
  }
}

// The scalar forms of the vector operations below: the same IEEE operation per element.
template <typename T>
inline T vadd(T a, T b) {
  return a + b;
}
template <typename T>
inline T vsub(T a, T b) {
  return a - b;
}
template <typename T>
inline T vmul(T a, T b) {
  return a * b;
}
template <typename T>
inline T vmin(T a, T b) {  // minps(a, b)
  return a < b ? a : b;
}
template <typename T>
inline T vmax(T a, T b) {  // maxps(a, b)
  return a > b ? a : b;
}

// ---------------------------------------------------------------------------------------
// Vectors: VF (float lanes) and VD (double lanes), with the operations the kernels use.
// vmin(a, b) = a < b ? a : b and vmax(a, b) = a > b ? a : b lane by lane, NaN included, as
// minps/maxps define them; relu(x) = vmax(0, x) keeps NaN and -0 as x < 0 ? 0 : x does.

#if defined(ACTCAM_VEC_AVX512)
struct VF {
  __m512 v;
  static constexpr int N = 16;
};
struct VD {
  __m512d v;
  static constexpr int N = 8;
};
inline VF vset1(float x) { return {_mm512_set1_ps(x)}; }
inline VF vadd(VF a, VF b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VF vsub(VF a, VF b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VF vmul(VF a, VF b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VF vmin(VF a, VF b) { return {_mm512_min_ps(a.v, b.v)}; }
inline VF vmax(VF a, VF b) { return {_mm512_max_ps(a.v, b.v)}; }
inline VF vloadu(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void vstoreu(float* p, VF a) { _mm512_storeu_ps(p, a.v); }
inline void vstream(float* p, VF a) { _mm512_stream_ps(p, a.v); }
inline VF vload_f16(const uint16_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline VF vload_bf16(const uint16_t* p) {
  const __m512i x = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(x, 16))};
}
inline VD vset1(double x) { return {_mm512_set1_pd(x)}; }
inline VD vadd(VD a, VD b) { return {_mm512_add_pd(a.v, b.v)}; }
inline VD vsub(VD a, VD b) { return {_mm512_sub_pd(a.v, b.v)}; }
inline VD vmul(VD a, VD b) { return {_mm512_mul_pd(a.v, b.v)}; }
inline VD vmin(VD a, VD b) { return {_mm512_min_pd(a.v, b.v)}; }
inline VD vmax(VD a, VD b) { return {_mm512_max_pd(a.v, b.v)}; }
inline VD vloadu(const double* p) { return {_mm512_loadu_pd(p)}; }
inline void vstoreu(double* p, VD a) { _mm512_storeu_pd(p, a.v); }
inline void vstream(double* p, VD a) { _mm512_stream_pd(p, a.v); }
// The sum of a register's lanes by halving (lane i + lane i + N/2, then again): the last
// steps of the plane sums' order (group_weights).
inline float vhsum(VF a) {
  const __m256 s8 = _mm256_add_ps(_mm512_castps512_ps256(a.v), _mm512_extractf32x8_ps(a.v, 1));
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
// The eight sums of eight registers' lanes, in vhsum's order (lane i + lane i + 8, then + 4,
// + 2, + 1), computed side by side: lane j of the result is vhsum(rj). Each level adds the
// same pairs as vhsum, with the registers' halves gathered by shuffles first.
inline __m256 hsum8(__m512 r0, __m512 r1, __m512 r2, __m512 r3, __m512 r4, __m512 r5, __m512 r6, __m512 r7) {
  // [a.lo256 + a.hi256, b.lo256 + b.hi256]: lanes i + i + 8 of a and of b
  auto halves = [](__m512 a, __m512 b) {
    return _mm512_add_ps(_mm512_shuffle_f32x4(a, b, 0x44), _mm512_shuffle_f32x4(a, b, 0xEE));
  };
  const __m512 v0 = halves(r0, r1), v1 = halves(r2, r3), v2 = halves(r4, r5), v3 = halves(r6, r7);
  // 128-bit lane c: i + i + 4 of register c (of four)
  const __m512 w0 = _mm512_add_ps(_mm512_shuffle_f32x4(v0, v1, 0x88), _mm512_shuffle_f32x4(v0, v1, 0xDD));
  const __m512 w1 = _mm512_add_ps(_mm512_shuffle_f32x4(v2, v3, 0x88), _mm512_shuffle_f32x4(v2, v3, 0xDD));
  // 128-bit lane c: [i + i + 2 of register c for i = 0, 1, the same of register c + 4]
  const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(1, 0, 1, 0)),
                                 _mm512_shuffle_ps(w0, w1, _MM_SHUFFLE(3, 2, 3, 2)));
  // 128-bit lane c: [total of register c, total of register c + 4, the same again]
  const __m512 t = _mm512_add_ps(_mm512_shuffle_ps(z, z, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm512_shuffle_ps(z, z, _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 4, 8, 12, 1, 5, 9, 13);
  return _mm512_castps512_ps256(_mm512_permutexvar_ps(order, t));
}
inline double vhsum(VD a) {
  const __m256d s4 = _mm256_add_pd(_mm512_castpd512_pd256(a.v), _mm512_extractf64x4_pd(a.v, 1));
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(s4), _mm256_extractf128_pd(s4, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}
// Lanes [0, n) become acc + x, the others stay acc.
inline VF vadd_first(VF acc, VF x, int n) {
  return {_mm512_mask_add_ps(acc.v, static_cast<__mmask16>((1u << n) - 1), acc.v, x.v)};
}
inline VD vadd_first(VD acc, VD x, int n) {
  return {_mm512_mask_add_pd(acc.v, static_cast<__mmask8>((1u << n) - 1), acc.v, x.v)};
}
#elif defined(ACTCAM_VEC_AVX2)
struct VF {
  __m256 v;
  static constexpr int N = 8;
};
struct VD {
  __m256d v;
  static constexpr int N = 4;
};
inline VF vset1(float x) { return {_mm256_set1_ps(x)}; }
inline VF vadd(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF vsub(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF vmul(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VF vmin(VF a, VF b) { return {_mm256_min_ps(a.v, b.v)}; }
inline VF vmax(VF a, VF b) { return {_mm256_max_ps(a.v, b.v)}; }
inline VF vloadu(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void vstoreu(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline void vstream(float* p, VF a) { _mm256_stream_ps(p, a.v); }
inline VF vload_f16(const uint16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline VF vload_bf16(const uint16_t* p) {
  const __m256i x = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(x, 16))};
}
inline VD vset1(double x) { return {_mm256_set1_pd(x)}; }
inline VD vadd(VD a, VD b) { return {_mm256_add_pd(a.v, b.v)}; }
inline VD vsub(VD a, VD b) { return {_mm256_sub_pd(a.v, b.v)}; }
inline VD vmul(VD a, VD b) { return {_mm256_mul_pd(a.v, b.v)}; }
inline VD vmin(VD a, VD b) { return {_mm256_min_pd(a.v, b.v)}; }
inline VD vmax(VD a, VD b) { return {_mm256_max_pd(a.v, b.v)}; }
inline VD vloadu(const double* p) { return {_mm256_loadu_pd(p)}; }
inline void vstoreu(double* p, VD a) { _mm256_storeu_pd(p, a.v); }
inline void vstream(double* p, VD a) { _mm256_stream_pd(p, a.v); }
inline float vhsum(VF a) {
  const __m128 s4 = _mm_add_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  const __m128 s2 = _mm_add_ps(s4, _mm_movehl_ps(s4, s4));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
inline double vhsum(VD a) {
  const __m128d s2 = _mm_add_pd(_mm256_castpd256_pd128(a.v), _mm256_extractf128_pd(a.v, 1));
  return _mm_cvtsd_f64(_mm_add_sd(s2, _mm_unpackhi_pd(s2, s2)));
}
inline VF vadd_first(VF acc, VF x, int n) {
  const __m256 m = _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
  return {_mm256_blendv_ps(acc.v, _mm256_add_ps(acc.v, x.v), m)};
}
inline VD vadd_first(VD acc, VD x, int n) {
  const __m256d m = _mm256_castsi256_pd(_mm256_cmpgt_epi64(_mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
  return {_mm256_blendv_pd(acc.v, _mm256_add_pd(acc.v, x.v), m)};
}
#elif defined(ACTCAM_VEC_SSE2)
struct VF {
  __m128 v;
  static constexpr int N = 4;
};
struct VD {
  __m128d v;
  static constexpr int N = 2;
};
inline VF vset1(float x) { return {_mm_set1_ps(x)}; }
inline VF vadd(VF a, VF b) { return {_mm_add_ps(a.v, b.v)}; }
inline VF vsub(VF a, VF b) { return {_mm_sub_ps(a.v, b.v)}; }
inline VF vmul(VF a, VF b) { return {_mm_mul_ps(a.v, b.v)}; }
inline VF vmin(VF a, VF b) { return {_mm_min_ps(a.v, b.v)}; }
inline VF vmax(VF a, VF b) { return {_mm_max_ps(a.v, b.v)}; }
inline VF vloadu(const float* p) { return {_mm_loadu_ps(p)}; }
inline void vstoreu(float* p, VF a) { _mm_storeu_ps(p, a.v); }
inline void vstream(float* p, VF a) { _mm_stream_ps(p, a.v); }
// half -> float in SSE2 integer arithmetic: half_to_float above, four lanes at a time.
inline VF vload_f16(const uint16_t* p) {
  const __m128i h = _mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  const __m128i sign = _mm_and_si128(h, _mm_set1_epi32(static_cast<int>(0x80000000u)));
  const __m128i two_w = _mm_add_epi32(h, h);
  const __m128 normalized = _mm_mul_ps(
      _mm_castsi128_ps(_mm_add_epi32(_mm_srli_epi32(two_w, 4), _mm_set1_epi32(static_cast<int>(0xE0u << 23)))),
      _mm_set1_ps(0x1.0p-112f));
  const __m128 denormalized =
      _mm_sub_ps(_mm_castsi128_ps(_mm_or_si128(_mm_srli_epi32(two_w, 17), _mm_set1_epi32(126 << 23))),
                 _mm_set1_ps(0.5f));
  // two_w < 2^27 (unsigned) <=> the half's exponent is 0: compare its exponent bits instead
  const __m128i is_denormal =
      _mm_cmpeq_epi32(_mm_and_si128(h, _mm_set1_epi32(0x7C000000)), _mm_setzero_si128());
  const __m128i r = _mm_or_si128(_mm_and_si128(is_denormal, _mm_castps_si128(denormalized)),
                                 _mm_andnot_si128(is_denormal, _mm_castps_si128(normalized)));
  return {_mm_castsi128_ps(_mm_or_si128(sign, r))};
}
inline VF vload_bf16(const uint16_t* p) {
  return {_mm_castsi128_ps(
      _mm_unpacklo_epi16(_mm_setzero_si128(), _mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))))};
}
inline VD vset1(double x) { return {_mm_set1_pd(x)}; }
inline VD vadd(VD a, VD b) { return {_mm_add_pd(a.v, b.v)}; }
inline VD vsub(VD a, VD b) { return {_mm_sub_pd(a.v, b.v)}; }
inline VD vmul(VD a, VD b) { return {_mm_mul_pd(a.v, b.v)}; }
inline VD vmin(VD a, VD b) { return {_mm_min_pd(a.v, b.v)}; }
inline VD vmax(VD a, VD b) { return {_mm_max_pd(a.v, b.v)}; }
inline VD vloadu(const double* p) { return {_mm_loadu_pd(p)}; }
inline void vstoreu(double* p, VD a) { _mm_storeu_pd(p, a.v); }
inline void vstream(double* p, VD a) { _mm_stream_pd(p, a.v); }
inline float vhsum(VF a) {
  const __m128 s2 = _mm_add_ps(a.v, _mm_movehl_ps(a.v, a.v));
  return _mm_cvtss_f32(_mm_add_ss(s2, _mm_shuffle_ps(s2, s2, 1)));
}
inline double vhsum(VD a) { return _mm_cvtsd_f64(_mm_add_sd(a.v, _mm_unpackhi_pd(a.v, a.v))); }
inline VF vadd_first(VF acc, VF x, int n) {
  const __m128 m = _mm_castsi128_ps(_mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 1, 2, 3)));
  return {_mm_or_ps(_mm_and_ps(m, _mm_add_ps(acc.v, x.v)), _mm_andnot_ps(m, acc.v))};
}
inline VD vadd_first(VD acc, VD x, int n) {
  const __m128d m = _mm_castsi128_pd(_mm_cmpgt_epi32(_mm_set1_epi32(n), _mm_setr_epi32(0, 0, 1, 1)));
  return {_mm_or_pd(_mm_and_pd(m, _mm_add_pd(acc.v, x.v)), _mm_andnot_pd(m, acc.v))};
}
#else
template <typename T, int n>
struct Lanes {
  T v[n];
  static constexpr int N = n;
};
using VF = Lanes<float, 4>;
using VD = Lanes<double, 2>;
#define ACTCAM_LANEWISE(EXPR)      \
  Lanes<T, n> r;                   \
  for (int i = 0; i < n; ++i) {    \
    r.v[i] = EXPR;                 \
  }                                \
  return r;
inline VF vset1(float x) {
  constexpr int n = 4;
  using T = float;
  ACTCAM_LANEWISE(x)
}
inline VD vset1(double x) {
  constexpr int n = 2;
  using T = double;
  ACTCAM_LANEWISE(x)
}
template <typename T, int n>
inline Lanes<T, n> vadd(Lanes<T, n> a, Lanes<T, n> b) {
  ACTCAM_LANEWISE(a.v[i] + b.v[i])
}
template <typename T, int n>
inline Lanes<T, n> vsub(Lanes<T, n> a, Lanes<T, n> b) {
  ACTCAM_LANEWISE(a.v[i] - b.v[i])
}
template <typename T, int n>
inline Lanes<T, n> vmul(Lanes<T, n> a, Lanes<T, n> b) {
  ACTCAM_LANEWISE(a.v[i] * b.v[i])
}
template <typename T, int n>
inline Lanes<T, n> vmin(Lanes<T, n> a, Lanes<T, n> b) {
  ACTCAM_LANEWISE(a.v[i] < b.v[i] ? a.v[i] : b.v[i])
}
template <typename T, int n>
inline Lanes<T, n> vmax(Lanes<T, n> a, Lanes<T, n> b) {
  ACTCAM_LANEWISE(a.v[i] > b.v[i] ? a.v[i] : b.v[i])
}
inline VF vloadu(const float* p) {
  constexpr int n = 4;
  using T = float;
  ACTCAM_LANEWISE(p[i])
}
inline VD vloadu(const double* p) {
  constexpr int n = 2;
  using T = double;
  ACTCAM_LANEWISE(p[i])
}
template <typename T, int n>
inline void vstoreu(T* p, Lanes<T, n> a) {
  for (int i = 0; i < n; ++i) p[i] = a.v[i];
}
template <typename T, int n>
inline void vstream(T* p, Lanes<T, n> a) {  // no streaming store in portable code
  vstoreu(p, a);
}
template <typename T, int n>
inline T vhsum(Lanes<T, n> a) {
  for (int half = n / 2; half >= 1; half /= 2)
    for (int i = 0; i < half; ++i) a.v[i] = a.v[i] + a.v[i + half];
  return a.v[0];
}
template <typename T, int n>
inline Lanes<T, n> vadd_first(Lanes<T, n> acc, Lanes<T, n> x, int m) {
  for (int i = 0; i < m; ++i) acc.v[i] = acc.v[i] + x.v[i];
  return acc;
}
inline VF vload_f16(const uint16_t* p) {
  constexpr int n = 4;
  using T = float;
  ACTCAM_LANEWISE(half_to_float(p[i]))
}
inline VF vload_bf16(const uint16_t* p) {
  constexpr int n = 4;
  using T = float;
  ACTCAM_LANEWISE(bf16_to_float(p[i]))
}
#undef ACTCAM_LANEWISE
#endif

template <typename T>
struct VecOf;
template <>
struct VecOf<float> {
  using type = VF;
};
template <>
struct VecOf<double> {
  using type = VD;
};
template <typename T>
using Vec = typename VecOf<T>::type;

// One vector of source elements as T (float16 / bfloat16 only into float).
template <typename S, typename T>
inline Vec<T> vload_src(const Stor<S>* p) {
  if constexpr (std::is_same_v<S, F16>) {
    return vload_f16(p);
  } else if constexpr (std::is_same_v<S, BF16>) {
    return vload_bf16(p);
  } else {
    return vloadu(p);
  }
}

inline VF relu(VF x) { return vmax(vset1(0.f), x); }
inline VD relu(VD x) { return vmax(vset1(0.0), x); }
inline float relu(float x) { return x < 0.f ? 0.f : x; }
inline double relu(double x) { return x < 0.0 ? 0.0 : x; }

// ---------------------------------------------------------------------------------------
// Sums across the elements of a plane (group_weights): element i goes to partial sum i % 16,
// in order; the 16 partial sums, held in 16 / V::N registers, are then added by halving (sum
// j + sum j + 8 for j < 8, then j + 4, ...). The same order on every capability.

constexpr int kLanes = 16;

// The m < V::N elements at p as a vector (the other lanes 0), without reading past them.
template <typename S, typename T>
inline Vec<T> vload_src_first(const Stor<S>* p, int m) {
#if defined(ACTCAM_VEC_AVX512)
  if constexpr (std::is_same_v<S, float>) {
    return {_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << m) - 1), p)};
  } else if constexpr (std::is_same_v<S, double>) {
    return {_mm512_maskz_loadu_pd(static_cast<__mmask8>((1u << m) - 1), p)};
  } else {
    const __m256i x = _mm256_maskz_loadu_epi16(static_cast<__mmask16>((1u << m) - 1), p);
    if constexpr (std::is_same_v<S, F16>) {
      return {_mm512_cvtph_ps(x)};
    } else {
      return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(x), 16))};
    }
  }
#else
#if defined(ACTCAM_VEC_AVX2)
  if constexpr (std::is_same_v<S, float>) {
    return {_mm256_maskload_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(m), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)))};
  } else if constexpr (std::is_same_v<S, double>) {
    return {_mm256_maskload_pd(p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(m), _mm256_setr_epi64x(0, 1, 2, 3)))};
  }
#endif
  Stor<S> buf[kLanes] = {};
  std::memcpy(buf, p, m * sizeof(Stor<S>));
  return vload_src<S, T>(buf);
#endif
}

#if defined(ACTCAM_VEC_AVX512)
// Stores the first m < V::N lanes of a at p, without writing past them.
inline void vstore_first(float* p, VF a, int m) { _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << m) - 1), a.v); }
inline void vstore_first(double* p, VD a, int m) { _mm512_mask_storeu_pd(p, static_cast<__mmask8>((1u << m) - 1), a.v); }
#endif

// ---------------------------------------------------------------------------------------
// The low-resolution maps

// Copies pixels [p0, p0 + n) of kn channel planes (element (j, y, x) at src + j*sj + y*sh +
// x*sw) into dst[j * n + i] as T.
template <typename S, typename T>
void gather(const Stor<S>* src, int64_t kn, int64_t sj, int64_t sh, int64_t sw, int64_t w, int64_t p0, int64_t n,
            T* dst) {
  int64_t y = p0 / w, x = p0 % w;
  for (int64_t i = 0; i < n; ++i) {
    const Stor<S>* s = src + y * sh + x * sw;
    for (int64_t j = 0; j < kn; ++j) dst[j * n + i] = load1<S, T>(s + j * sj);
    if (++x == w) {
      x = 0;
      ++y;
    }
  }
}

// The Grad-CAM / XGrad-CAM weights of kn <= kChannelGroup channels from their whole planes
// a + j*ak and g + j*gk of n pixels: each channel's sums in the order above, the channels side by
// side so that their chains of additions overlap.
template <typename S, typename T>
void group_weights(int mode, int64_t kn, const Stor<S>* a, int64_t ak, const Stor<S>* g, int64_t gk, int64_t n,
                   T* wt) {
  using V = Vec<T>;
  constexpr int R = kLanes / V::N;
  const bool x = mode == kXGradCam;
  V num[kChannelGroup][R], den[kChannelGroup][R];
  for (int64_t j = 0; j < kn; ++j)
    for (int r = 0; r < R; ++r) num[j][r] = den[j][r] = vset1(T(0));
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (int64_t j = 0; j < kn; ++j) {
      for (int r = 0; r < R; ++r) {
        const V gv = vload_src<S, T>(g + j * gk + i + r * V::N);
        if (x) {
          const V av = vload_src<S, T>(a + j * ak + i + r * V::N);
          num[j][r] = vadd(num[j][r], vmul(gv, av));
          den[j][r] = vadd(den[j][r], av);
        } else {
          num[j][r] = vadd(num[j][r], gv);
        }
      }
    }
  }
  for (int r = 0; r < R && i < n; ++r, i += V::N) {
    const int m = static_cast<int>(std::min<int64_t>(V::N, n - i));
    for (int64_t j = 0; j < kn; ++j) {
      const V gv = m == V::N ? vload_src<S, T>(g + j * gk + i) : vload_src_first<S, T>(g + j * gk + i, m);
      const V av = !x ? V{} : m == V::N ? vload_src<S, T>(a + j * ak + i) : vload_src_first<S, T>(a + j * ak + i, m);
      if (x) {
        num[j][r] = m == V::N ? vadd(num[j][r], vmul(gv, av)) : vadd_first(num[j][r], vmul(gv, av), m);
        den[j][r] = m == V::N ? vadd(den[j][r], av) : vadd_first(den[j][r], av, m);
      } else {
        num[j][r] = m == V::N ? vadd(num[j][r], gv) : vadd_first(num[j][r], gv, m);
      }
    }
  }
#if defined(ACTCAM_VEC_AVX512)
  if constexpr (std::is_same_v<T, float>) {
    if (kn == kChannelGroup) {  // R == 1: one register per channel
      const __m256 nu = hsum8(num[0][0].v, num[1][0].v, num[2][0].v, num[3][0].v, num[4][0].v, num[5][0].v,
                              num[6][0].v, num[7][0].v);
      if (x) {
        const __m256 de = hsum8(den[0][0].v, den[1][0].v, den[2][0].v, den[3][0].v, den[4][0].v, den[5][0].v,
                                den[6][0].v, den[7][0].v);
        // de != 0 ? nu / de : 0, lane by lane (NaN != 0 holds, -0 != 0 does not)
        const __mmask8 nonzero = _mm256_cmp_ps_mask(de, _mm256_setzero_ps(), _CMP_NEQ_UQ);
        _mm256_storeu_ps(wt, _mm256_maskz_div_ps(nonzero, nu, de));
      } else {
        _mm256_storeu_ps(wt, _mm256_div_ps(nu, _mm256_set1_ps(static_cast<float>(n))));
      }
      return;
    }
  }
#endif
  for (int64_t j = 0; j < kn; ++j) {
    for (int r = R; r > 1; r /= 2) {
      for (int q = 0; q < r / 2; ++q) {
        num[j][q] = vadd(num[j][q], num[j][q + r / 2]);
        den[j][q] = vadd(den[j][q], den[j][q + r / 2]);
      }
    }
    if (x) {
      const T nu = vhsum(num[j][0]), de = vhsum(den[j][0]);
      wt[j] = de != T(0) ? nu / de : T(0);
    } else {
      wt[j] = vhsum(num[j][0]) / static_cast<T>(n);
    }
  }
}

// The term channel j adds to pixel i of the running sum, as a vector or a scalar.
template <int mode, typename X>
inline X term(X wj, X a, X g) {
  if constexpr (mode == kHiResCam) {
    return vmul(g, a);
  } else if constexpr (mode == kGradCamElementwise) {
    return relu(vmul(g, a));
  } else if constexpr (mode == kLayerCam) {
    return vmul(relu(g), a);
  } else {
    return vmul(wj, a);
  }
}

// low[i] += term of channel 0, then of channel 1, ..., of channel kn - 1, for i in [0, n):
// planes a + j*ak and g + j*gk of n contiguous pixels, weights wt[j]. KN > 0 fixes kn at
// compile time (a full group), so the loop over channels unrolls.
template <int mode, int KN, typename S, typename T>
void accumulate(int64_t kn_runtime, const Stor<S>* a, int64_t ak, const Stor<S>* g, int64_t gk, const T* wt,
                int64_t n, T* __restrict low) {
  using V = Vec<T>;
  constexpr bool kUsesG = mode == kHiResCam || mode == kGradCamElementwise || mode == kLayerCam;
  const int64_t kn = KN > 0 ? KN : kn_runtime;
  V wv[kChannelGroup];
  for (int64_t j = 0; j < kn; ++j) wv[j] = vset1(kUsesG ? T(0) : wt[j]);
  auto gv = [&](int64_t j, int64_t i) { return kUsesG ? vload_src<S, T>(g + j * gk + i) : V{}; };
  int64_t i = 0;
  // Four vectors at a time: four independent chains of additions for the CPU to overlap.
  for (; i + 4 * V::N <= n; i += 4 * V::N) {
    V acc[4];
    for (int u = 0; u < 4; ++u) acc[u] = vloadu(low + i + u * V::N);
    for (int64_t j = 0; j < kn; ++j)
      for (int u = 0; u < 4; ++u)
        acc[u] = vadd(acc[u], term<mode>(wv[j], vload_src<S, T>(a + j * ak + i + u * V::N), gv(j, i + u * V::N)));
    for (int u = 0; u < 4; ++u) vstoreu(low + i + u * V::N, acc[u]);
  }
  for (; i + V::N <= n; i += V::N) {
    V acc = vloadu(low + i);
    for (int64_t j = 0; j < kn; ++j) acc = vadd(acc, term<mode>(wv[j], vload_src<S, T>(a + j * ak + i), gv(j, i)));
    vstoreu(low + i, acc);
  }
#if defined(ACTCAM_VEC_AVX512)
  if (i < n) {
    // The last n - i < V::N pixels in masked lanes: the same operations per pixel as below,
    // without a conversion per element (a plane of 7 x 7 leaves one pixel here).
    const int m = static_cast<int>(n - i);
    V acc = vload_src_first<T, T>(low + i, m);
    for (int64_t j = 0; j < kn; ++j) {
      const V gm = kUsesG ? vload_src_first<S, T>(g + j * gk + i, m) : V{};
      acc = vadd(acc, term<mode>(wv[j], vload_src_first<S, T>(a + j * ak + i, m), gm));
    }
    vstore_first(low + i, acc, m);
    return;
  }
#endif
  for (; i < n; ++i) {
    T acc = low[i];
    for (int64_t j = 0; j < kn; ++j) {
      const T gs = kUsesG ? load1<S, T>(g + j * gk + i) : T(0);
      acc = acc + term<mode>(kUsesG ? T(0) : wt[j], load1<S, T>(a + j * ak + i), gs);
    }
    low[i] = acc;
  }
}

template <typename S, typename T>
void accumulate_group(int mode, int64_t kn, const Stor<S>* a, int64_t ak, const Stor<S>* g, int64_t gk, const T* wt,
                      int64_t n, T* low) {
#define ACTCAM_ACCUMULATE(MODE)                                                           \
  if (kn == kChannelGroup) {                                                              \
    accumulate<MODE, static_cast<int>(kChannelGroup), S, T>(kn, a, ak, g, gk, wt, n, low); \
  } else {                                                                                \
    accumulate<MODE, 0, S, T>(kn, a, ak, g, gk, wt, n, low);                              \
  }                                                                                       \
  return;
  switch (mode) {
    case kHiResCam:
      ACTCAM_ACCUMULATE(kHiResCam)
    case kGradCamElementwise:
      ACTCAM_ACCUMULATE(kGradCamElementwise)
    case kLayerCam:
      ACTCAM_ACCUMULATE(kLayerCam)
    default:
      ACTCAM_ACCUMULATE(kWeights)
  }
#undef ACTCAM_ACCUMULATE
}

inline bool plane_contiguous(int64_t sh, int64_t sw, int64_t w, int64_t h) {
  return (sw == 1 || w == 1) && (sh == w || h == 1);
}

// Whether planes of S are read in place for accumulation type T (float16 and bfloat16 are
// converted to float in registers; every other mix is gathered and converted first).
template <typename S, typename T>
constexpr bool kReadsInPlace = std::is_same_v<Stor<S>, T> || (std::is_same_v<T, float> && !std::is_same_v<S, double>);

template <typename S, typename T>
void lowres_impl(const LowresJob<T>& j) {
  const Stor<S>* a = static_cast<const Stor<S>*>(j.a);
  const Stor<S>* g = static_cast<const Stor<S>*>(j.g);
  const int64_t hw = j.h * j.w, n = j.p1 - j.p0;
  const bool from_grads = j.mode != kWeights;
  const bool weighted = j.mode == kWeights || j.mode == kGradCam || j.mode == kXGradCam;
  const bool needs_g = from_grads && !(weighted && j.weights != nullptr);
  // float16 / bfloat16 into double, or a plane that is not contiguous: gathered as T first
  const bool direct = kReadsInPlace<S, T> && plane_contiguous(j.ah, j.aw, j.w, j.h) &&
                      (!needs_g || plane_contiguous(j.gh, j.gw, j.w, j.h));
  T* a_buf = j.scratch;
  T* g_buf = j.scratch + kChannelGroup * n;
  T* wt = j.scratch + 2 * kChannelGroup * n;
  for (int64_t c = 0; c < j.cn; ++c) std::fill(j.low + c * hw + j.p0, j.low + c * hw + j.p1, T(0));
  for (int64_t k0 = 0; k0 < j.K; k0 += kChannelGroup) {
    const int64_t kn = std::min(kChannelGroup, j.K - k0);
    const Stor<S>* ak = a + k0 * j.ak;
    if (!direct) gather<S, T>(ak, kn, j.ak, j.ah, j.aw, j.w, j.p0, n, a_buf);
    for (int64_t c = j.c0; c < j.c0 + j.cn; ++c) {
      const Stor<S>* gk = needs_g ? g + c * j.gc + k0 * j.gk : nullptr;
      if (!direct && needs_g) gather<S, T>(gk, kn, j.gk, j.gh, j.gw, j.w, j.p0, n, g_buf);
      if (weighted && j.weights != nullptr) {
        for (int64_t q = 0; q < kn; ++q) wt[q] = j.weights[(c - j.c0) * j.wc + k0 + q];
      } else if (weighted && direct) {
        if constexpr (kReadsInPlace<S, T>) group_weights<S, T>(j.mode, kn, ak, j.ak, gk, j.gk, n, wt);
      } else if (weighted) {
        group_weights<T, T>(j.mode, kn, a_buf, n, g_buf, n, n, wt);
      }
      T* low = j.low + (c - j.c0) * hw + j.p0;
      const int mode = weighted ? static_cast<int>(kWeights) : j.mode;
      if (direct) {
        if constexpr (kReadsInPlace<S, T>)
          accumulate_group<S, T>(mode, kn, ak + j.p0, j.ak, needs_g ? gk + j.p0 : nullptr, j.gk, wt, n, low);
      } else {
        accumulate_group<T, T>(mode, kn, a_buf, n, g_buf, n, wt, n, low);
      }
    }
  }
}

template <typename T>
void lowres(const LowresJob<T>& j) {
  switch (j.src) {
    case Src::kHalf:
      return lowres_impl<F16, T>(j);
    case Src::kBFloat16:
      return lowres_impl<BF16, T>(j);
    case Src::kDouble:
      if constexpr (std::is_same_v<T, double>) return lowres_impl<double, T>(j);
      break;
    default:
      return lowres_impl<float, T>(j);
  }
}

template <typename S, typename T>
void channel_weights_impl(const LowresJob<T>& j, int64_t k0, int64_t k1, T* out) {
  const Stor<S>* a = static_cast<const Stor<S>*>(j.a);
  const Stor<S>* g = static_cast<const Stor<S>*>(j.g);
  const int64_t n = j.h * j.w;
  const bool direct =
      kReadsInPlace<S, T> && plane_contiguous(j.ah, j.aw, j.w, j.h) && plane_contiguous(j.gh, j.gw, j.w, j.h);
  T* a_buf = j.scratch;
  T* g_buf = j.scratch + kChannelGroup * n;
  for (int64_t k = k0; k < k1; k += kChannelGroup) {
    const int64_t kn = std::min(kChannelGroup, k1 - k);
    if (!direct && j.mode == kXGradCam) gather<S, T>(a + k * j.ak, kn, j.ak, j.ah, j.aw, j.w, 0, n, a_buf);
    for (int64_t c = j.c0; c < j.c0 + j.cn; ++c) {
      const Stor<S>* gk = g + c * j.gc + k * j.gk;
      T* o = out + (c - j.c0) * j.K + k;
      if (direct) {
        if constexpr (kReadsInPlace<S, T>) group_weights<S, T>(j.mode, kn, a + k * j.ak, j.ak, gk, j.gk, n, o);
      } else {
        gather<S, T>(gk, kn, j.gk, j.gh, j.gw, j.w, 0, n, g_buf);
        group_weights<T, T>(j.mode, kn, a_buf, n, g_buf, n, n, o);
      }
    }
  }
}

template <typename T>
void channel_weights(const LowresJob<T>& j, int64_t k0, int64_t k1, T* out) {
  switch (j.src) {
    case Src::kHalf:
      return channel_weights_impl<F16, T>(j, k0, k1, out);
    case Src::kBFloat16:
      return channel_weights_impl<BF16, T>(j, k0, k1, out);
    case Src::kDouble:
      if constexpr (std::is_same_v<T, double>) return channel_weights_impl<double, T>(j, k0, k1, out);
      break;
    default:
      return channel_weights_impl<float, T>(j, k0, k1, out);
  }
}

// ---------------------------------------------------------------------------------------
// Resize, range and output

template <typename T>
void relu_span(T* v, int64_t n) {
  using V = Vec<T>;
  int64_t i = 0;
  for (; i + V::N <= n; i += V::N) vstoreu(v + i, relu(vloadu(v + i)));
  for (; i < n; ++i) v[i] = relu(v[i]);
}

template <typename T>
void resize_rows(const MapPlanView<T>& p, const T* low, T* rows, int64_t j0, int64_t j1) {
  for (int64_t j = j0; j < j1; ++j) {
    const T* src = low + p.src_rows[j] * p.w;
    T* r = rows + j * p.W;
    for (int64_t X = 0; X < p.W; ++X) {
      const BilinearTapT<T>& t = p.xtaps[X];
      r[X] = t.l0 * src[t.i0] + t.l1 * src[t.i1];
    }
  }
}

template <typename T>
MapRange<T> range(const MapPlanView<T>& p, const T* rows) {
  using V = Vec<T>;
  const T inf = std::numeric_limits<T>::infinity();
  V lo = vset1(inf), hi = vset1(-inf), zero = vset1(T(0));  // zero: sum of v - v, NaN after a NaN or inf
  T slo = inf, shi = -inf, szero = T(0);
  for (int64_t e = 0; e < p.n_extremes; ++e) {
    const BilinearTapT<T>& t = p.slot_taps[p.extremes[e]];
    const T* r0 = rows + t.i0 * p.W;
    const T* r1 = rows + t.i1 * p.W;
    const V a = vset1(t.l0), b = vset1(t.l1);
    int64_t X = 0;
    for (; X + V::N <= p.W; X += V::N) {
      const V v = vadd(vmul(a, vloadu(r0 + X)), vmul(b, vloadu(r1 + X)));
      lo = vmin(v, lo);
      hi = vmax(v, hi);
      zero = vadd(zero, vsub(v, v));
    }
    for (; X < p.W; ++X) {
      const T v = t.l0 * r0[X] + t.l1 * r1[X];
      slo = vmin(v, slo);
      shi = vmax(v, shi);
      szero = szero + (v - v);
    }
  }
  T l[V::N], h[V::N], z[V::N];
  vstoreu(l, lo);
  vstoreu(h, hi);
  vstoreu(z, zero);
  for (int i = 0; i < V::N; ++i) {
    slo = vmin(l[i], slo);
    shi = vmax(h[i], shi);
    szero = szero + z[i];
  }
  return {slo, shi, szero != T(0)};
}

// The first X of row o at which o + X is aligned to a vector of `lanes` elements, as streaming
// stores need; at most W, and W when o is not even aligned to T.
template <typename T>
int64_t stream_start(const T* o, int64_t W, int64_t lanes) {
  const uintptr_t bytes = static_cast<uintptr_t>(lanes) * sizeof(T);
  const uintptr_t mis = reinterpret_cast<uintptr_t>(o) % bytes;
  if (mis % sizeof(T) != 0) return W;  // T misaligned: never aligned to a vector
  const int64_t X = mis == 0 ? 0 : static_cast<int64_t>((bytes - mis) / sizeof(T));
  return std::min(X, W);
}

template <typename T>
void write_rows(const MapPlanView<T>& p, const T* rows, const MinMaxScaleT<T>* mm, T* out, int64_t Y0, int64_t Y1,
                bool stream) {
  using V = Vec<T>;
  auto store = [stream](T* p, V v) {
    if (stream) {
      vstream(p, v);
    } else {
      vstoreu(p, v);
    }
  };
  for (int64_t Y = Y0; Y < Y1; ++Y) {
    const BilinearTapT<T>& t = p.slot_taps[Y];
    const T* __restrict r0 = rows + t.i0 * p.W;
    const T* __restrict r1 = rows + t.i1 * p.W;
    T* __restrict o = out + Y * p.W;
    const V a = vset1(t.l0), b = vset1(t.l1);
    // Streaming stores (which bypass the caches, for outputs too big to stay there) need
    // aligned addresses: the pixels before the first aligned one are written one by one, by
    // the same operations as the vector lanes.
    const int64_t X0 = stream ? stream_start(o, p.W, V::N) : 0;
    if (mm == nullptr) {
      int64_t X = 0;
      for (; X < X0; ++X) o[X] = t.l0 * r0[X] + t.l1 * r1[X];
      for (; X + V::N <= p.W; X += V::N) store(o + X, vadd(vmul(a, vloadu(r0 + X)), vmul(b, vloadu(r1 + X))));
      for (; X < p.W; ++X) o[X] = t.l0 * r0[X] + t.l1 * r1[X];
      continue;
    }
    // clamp(v) = max(0, min(1, v)): the same bits as v < 0 ? 0 : (v > 1 ? 1 : v), NaN and -0
    // included. It absorbs the rounding by which a row between two extreme rows can land a
    // few ulp outside their range.
    const V scale = vset1(mm->scale), shift = vset1(mm->shift), inv = vset1(mm->inv);
    const V zero = vset1(T(0)), one = vset1(T(1));
    auto scalar = [&](int64_t X) {
      const T v = minmax_apply(*mm, t.l0 * r0[X] + t.l1 * r1[X]);
      o[X] = vmax(T(0), vmin(T(1), v));
    };
    int64_t X = 0;
    for (; X < X0; ++X) scalar(X);
    for (; X + V::N <= p.W; X += V::N) {
      const V v = vadd(vmul(a, vloadu(r0 + X)), vmul(b, vloadu(r1 + X)));
      store(o + X, vmax(zero, vmin(one, vmul(vsub(vmul(v, scale), shift), inv))));
    }
    for (; X < p.W; ++X) scalar(X);
  }
#if !defined(ACTCAM_VEC_PORTABLE)
  // Streamed stores are weakly ordered: complete them before the rows are handed on.
  if (stream) _mm_sfence();
#endif
}

void blend_span(const uint8_t* __restrict heat, const uint8_t* __restrict image, uint8_t* __restrict out, int64_t n,
                float w_heat, float w_image) {
  for (int64_t i = 0; i < n; ++i) out[i] = blend_u8(heat[i], image[i], w_heat, w_image);
}

template <typename T>
constexpr Ops<T> make_ops() {
  return Ops<T>{&lowres<T>, &channel_weights<T>, &relu_span<T>, &resize_rows<T>, &range<T>, &write_rows<T>};
}

}  // namespace

const KernelTable& table() {
#if defined(ACTCAM_CPU_CAPABILITY_AVX512)
  constexpr const char* name = "avx512";
#elif defined(ACTCAM_CPU_CAPABILITY_AVX2)
  constexpr const char* name = "avx2";
#else
  constexpr const char* name = "default";
#endif
  static const KernelTable t{name, make_ops<float>(), make_ops<double>(), &blend_span};
  return t;
}

}  // namespace ACTCAM_CPU_CAPABILITY
}  // namespace cpu
}  // namespace actcam
