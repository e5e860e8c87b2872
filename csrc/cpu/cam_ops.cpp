// CPU kernels of the actcam ops. Each forward op is one at::parallel_for over independent
// units (maps for cam, (image, channel) rows for gradcampp_weights, image rows for overlay)
// that reads its inputs once through their strides and writes its output once; cam_backward
// is two (maps, then (image, channel) rows).
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../kernel_math.h"
#include "../checks.h"
#include "../jet_colormap.h"

namespace actcam {
namespace {

// T is the accumulation type throughout: float for float32/float16/bfloat16 inputs, double
// for float64 ones (kernel_math.h).

// Calls f with a T{} of the accumulation type of `acc` (float or double).
template <typename F>
void with_acc_type(at::ScalarType acc, F&& f) {
  if (acc == at::kDouble) {
    f(double{});
  } else {
    f(float{});
  }
}

// low[p] = sum_k wt[k] * A[k, p] in T, for one image's activations A (strides in elements).
template <typename scalar_t, typename T>
void channel_sum(const scalar_t* A, int64_t sk, int64_t sh, int64_t sw, int64_t K, int64_t h, int64_t w,
                 const T* wt, T* low) {
  const int64_t hw = h * w;
  if (sw == 1 && sh == w) {
    // Each channel plane is contiguous (contiguous or sliced along B/K): stream the planes.
    std::fill(low, low + hw, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const scalar_t* a = A + k * sk;
      const T wk = wt[k];
      for (int64_t p = 0; p < hw; ++p) low[p] += wk * static_cast<T>(a[p]);
    }
  } else if (sk == 1) {
    // channels_last: the K values of one pixel are contiguous, so each pixel is a dot product.
    // Four partial sums give the CPU independent chains without reassociating per element.
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const scalar_t* a = A + y * sh + x * sw;
        T acc[4] = {T(0), T(0), T(0), T(0)};
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) {
          for (int j = 0; j < 4; ++j) acc[j] += wt[k + j] * static_cast<T>(a[k + j]);
        }
        for (; k < K; ++k) acc[0] += wt[k] * static_cast<T>(a[k]);
        low[y * w + x] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      }
    }
  } else {
    std::fill(low, low + hw, T(0));
    for (int64_t k = 0; k < K; ++k) {
      const T wk = wt[k];
      for (int64_t y = 0; y < h; ++y) {
        const scalar_t* a = A + k * sk + y * sh;
        for (int64_t x = 0; x < w; ++x) low[y * w + x] += wk * static_cast<T>(a[x * sw]);
      }
    }
  }
}

// Running min, max and "saw a NaN or inf" of a map, in kLanes independent lanes: one SSE
// register each on x86-64 for float (explicit intrinsics, because GCC will not turn a float
// min/max reduction into minps/maxps without -ffast-math), plain lanes elsewhere.
template <typename T>
struct MapRange {
  static constexpr int kLanes = 4;
  T lo[kLanes], hi[kLanes], zero[kLanes];  // zero[j] accumulates v - v: 0, or NaN after a NaN/inf

  MapRange() {
    for (int j = 0; j < kLanes; ++j) {
      lo[j] = std::numeric_limits<T>::infinity();
      hi[j] = -std::numeric_limits<T>::infinity();
      zero[j] = T(0);
    }
  }
  void add(int j, T x) {
    lo[j] = x < lo[j] ? x : lo[j];
    hi[j] = x > hi[j] ? x : hi[j];
    zero[j] += x - x;
  }
  // out[i] = a * r0[i] + b * r1[i] (one output row of the vertical resize), tracking the range
  // in the same pass while the values are in registers.
  void blend_rows(T a, const T* __restrict r0, T b, const T* __restrict r1, T* __restrict out, int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
    if constexpr (std::is_same_v<T, float>) {
      const __m128 va = _mm_set1_ps(a), vb = _mm_set1_ps(b);
      __m128 vlo = _mm_loadu_ps(lo), vhi = _mm_loadu_ps(hi), vzero = _mm_loadu_ps(zero);
      for (; i + 4 <= n; i += 4) {
        const __m128 v = _mm_add_ps(_mm_mul_ps(va, _mm_loadu_ps(r0 + i)), _mm_mul_ps(vb, _mm_loadu_ps(r1 + i)));
        _mm_storeu_ps(out + i, v);
        vlo = _mm_min_ps(v, vlo);  // minps(v, lo) = v < lo ? v : lo, the scalar rule below
        vhi = _mm_max_ps(v, vhi);
        vzero = _mm_add_ps(vzero, _mm_sub_ps(v, v));
      }
      _mm_storeu_ps(lo, vlo);
      _mm_storeu_ps(hi, vhi);
      _mm_storeu_ps(zero, vzero);
    }
#endif
    for (; i < n; ++i) {
      out[i] = a * r0[i] + b * r1[i];
      add(static_cast<int>(i % kLanes), out[i]);
    }
  }
  T min() const { return *std::min_element(lo, lo + kLanes); }
  T max() const { return *std::max_element(hi, hi + kLanes); }
  bool non_finite() const {
    T z = T(0);
    for (int j = 0; j < kLanes; ++j) z += zero[j];
    return z != T(0);
  }
};

// The output rows whose values bound the whole resized map. Output row Y blends source rows
// i0 and i1 with weight l1 that grows with Y while (i0, i1) stays the same, so along every
// column the values between the first and the last row of such a run lie between the values
// of those two rows. The map's min and max are therefore reached on the first and last row
// of each run: about 2h rows to scan instead of H (for upsampling, H >> h).
template <typename T>
std::vector<int64_t> extreme_rows(const std::vector<BilinearTapT<T>>& ytaps) {
  std::vector<int64_t> rows;
  const int64_t H = static_cast<int64_t>(ytaps.size());
  for (int64_t Y = 0; Y < H; ++Y) {
    const bool first = Y == 0 || ytaps[Y].i0 != ytaps[Y - 1].i0 || ytaps[Y].i1 != ytaps[Y - 1].i1;
    const bool last = Y == H - 1 || ytaps[Y].i0 != ytaps[Y + 1].i0 || ytaps[Y].i1 != ytaps[Y + 1].i1;
    if (first || last) rows.push_back(Y);
  }
  return rows;
}

// Everything about one cam call that depends only on the sizes, computed once for all maps:
// the bilinear taps, and the source rows that some output row reads (at most min(h, 2H)), with
// every output row's vertical taps renumbered as slots into that list. The horizontal pass
// resizes only those rows, so its scratch is bounded by the output's size instead of growing
// with h x W (a tall map downsampled to a wide one).
template <typename T>
struct CamPlan {
  int64_t h, w, H, W;
  std::vector<BilinearTapT<T>> xtaps, ytaps;  // ytaps: i0, i1 are source rows
  std::vector<int64_t> src_rows;              // slot -> source row
  std::vector<BilinearTapT<T>> slot_taps;     // ytaps with i0, i1 as slots
  std::vector<int64_t> extremes;

  explicit CamPlan(const CamShape& s) : h(s.h), w(s.w), H(s.H), W(s.W), xtaps(s.W), ytaps(s.H) {
    const T scale_y = bilinear_scale<T>(h, H), scale_x = bilinear_scale<T>(w, W);
    for (int64_t Y = 0; Y < H; ++Y) ytaps[Y] = bilinear_tap(scale_y, Y, h);
    for (int64_t X = 0; X < W; ++X) xtaps[X] = bilinear_tap(scale_x, X, w);
    std::vector<int64_t> slot(h, -1);
    slot_taps = ytaps;
    for (BilinearTapT<T>& t : slot_taps) {
      // i0 and i1 never decrease with the output row, so the slots come out in increasing order.
      for (int64_t* i : {&t.i0, &t.i1}) {
        if (slot[*i] < 0) {
          slot[*i] = static_cast<int64_t>(src_rows.size());
          src_rows.push_back(*i);
        }
        *i = slot[*i];
      }
    }
    extremes = extreme_rows(slot_taps);
  }
  int64_t n_rows() const { return static_cast<int64_t>(src_rows.size()); }

  // rows[j * W + X]: source row src_rows[j] of the low-res map resized to width W.
  void resize_rows(const T* low, T* rows) const {
    for (int64_t j = 0; j < n_rows(); ++j) {
      const T* src = low + src_rows[j] * w;
      T* r = rows + j * W;
      for (int64_t X = 0; X < W; ++X) {
        const BilinearTapT<T>& t = xtaps[X];
        r[X] = t.l0 * src[t.i0] + t.l1 * src[t.i1];
      }
    }
  }
  // out[X] = output row Y of the resized map, from the rows of resize_rows.
  void output_row(const T* rows, int64_t Y, T* out) const {
    const BilinearTapT<T>& t = slot_taps[Y];
    const T* r0 = rows + t.i0 * W;
    const T* r1 = rows + t.i1 * W;
    for (int64_t X = 0; X < W; ++X) out[X] = t.l0 * r0[X] + t.l1 * r1[X];
  }
};

// out[i] = clamp(minmax_apply(a * r0[i] + b * r1[i]), 0, 1): one output row, resized and
// normalised in one pass. The clamp absorbs the rounding by which a row between two extreme
// rows can land a few ulp outside their range.
template <typename T>
void blend_rows_normalized(T a, const T* __restrict r0, T b, const T* __restrict r1, const MinMaxScaleT<T> mm,
                           T* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const T v = minmax_apply(mm, a * r0[i] + b * r1[i]);
    out[i] = v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
  }
}

template <typename T>
void relu_inplace(T* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] < T(0) ? T(0) : v[i];  // written so that NaN passes through
}

template <typename scalar_t, typename T>
void cam_cpu_impl(const at::Tensor& A, const T* w_ptr, const CamShape& s, bool relu, bool normalize, T* out) {
  const scalar_t* a_ptr = A.const_data_ptr<scalar_t>();
  const int64_t sb = A.stride(0), sk = A.stride(1), sh = A.stride(2), sw = A.stride(3);
  const int64_t h = s.h, w = s.w, H = s.H, W = s.W;
  const CamPlan<T> plan(s);

  at::parallel_for(0, s.B * s.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> low(h * w), rows(plan.n_rows() * W), scratch(W);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / s.C;
      channel_sum(a_ptr + b * sb, sk, sh, sw, s.K, h, w, w_ptr + m * s.K, low.data());
      if (relu) relu_inplace(low.data(), h * w);
      // Separable resize: every source row that is read to width W, then blend two rows per
      // output row.
      plan.resize_rows(low.data(), rows.data());
      T* o_map = out + m * H * W;
      if (!normalize) {
        for (int64_t Y = 0; Y < H; ++Y) plan.output_row(rows.data(), Y, o_map + Y * W);
        continue;
      }
      // The map's range, from the extreme output rows only (see extreme_rows), then a single
      // pass that writes every pixel already normalised.
      MapRange<T> range;
      for (const int64_t Y : plan.extremes) {
        const BilinearTapT<T>& t = plan.slot_taps[Y];
        range.blend_rows(t.l0, rows.data() + t.i0 * W, t.l1, rows.data() + t.i1 * W, scratch.data(), W);
      }
      const T lo = range.min(), hi = range.max();
      if (range.non_finite() || is_constant_map(lo, hi)) {
        std::fill(o_map, o_map + H * W, range.non_finite() ? std::numeric_limits<T>::quiet_NaN() : T(0));
        continue;
      }
      const MinMaxScaleT<T> mm = minmax_scale(lo, hi);
      for (int64_t Y = 0; Y < H; ++Y) {
        const BilinearTapT<T>& t = plan.slot_taps[Y];
        blend_rows_normalized(t.l0, rows.data() + t.i0 * W, t.l1, rows.data() + t.i1 * W, mm, o_map + Y * W, W);
      }
    }
  });
}

std::vector<int64_t> cam_out_sizes(const CamShape& s) {
  return s.per_class ? std::vector<int64_t>{s.B, s.C, s.H, s.W} : std::vector<int64_t>{s.B, s.H, s.W};
}

at::Tensor cam_cpu(const at::Tensor& activations, const at::Tensor& weights, at::IntArrayRef size, bool relu,
                   bool normalize) {
  const CamShape s = check_cam(activations, weights, size);
  const at::ScalarType acc = compute_dtype(activations, weights);
  at::Tensor out = at::empty(cam_out_sizes(s), activations.options().dtype(acc));
  if (out.numel() == 0) return out;
  // The weights are small ([B,C,K]); one copy in the accumulation type makes the inner loops
  // dtype-free.
  const at::Tensor wt = weights.to(acc).contiguous();
  ACTCAM_DISPATCH_FLOATS_AND_DOUBLE(activations.scalar_type(), "actcam::cam", [&] {
    with_acc_type(acc, [&](auto zero) {
      using T = decltype(zero);
      cam_cpu_impl<scalar_t, T>(activations, wt.const_data_ptr<T>(), s, relu, normalize, out.data_ptr<T>());
    });
  });
  return out;
}

// ---------------------------------------------------------------------------------------
// cam_backward: the vector-Jacobian product of cam, in two passes.
//
// 1. Per map (in parallel over maps): recompute the channel sum L, ReLU and the resize as the
//    forward pass does, then take the output's gradient back through the min-max
//    normalisation (1 / spread per pixel, plus the gradients of the min and the max, spread
//    evenly over the pixels that attain them, as torch's amin/amax backward does), through
//    the transposed bilinear stencil down to h x w, and through the ReLU mask: g_low.
// 2. Per (image, channel) (in parallel): grad_A[k] = sum_c w[c,k] g_low[c] and
//    grad_w[c,k] = sum_p A[k,p] g_low[c,p], reading each activation plane once.

// Adds the transposed bilinear resize of output row Y (its gradient g, W wide) to gR (h x w):
// each output pixel hands its gradient back to the four source pixels it read, with the
// weights it read them with. trow is w floats of scratch.
template <typename T>
void scatter_row(const CamPlan<T>& p, int64_t Y, const T* g, T* trow, T* gR) {
  std::fill(trow, trow + p.w, T(0));
  for (int64_t X = 0; X < p.W; ++X) {
    const BilinearTapT<T>& t = p.xtaps[X];
    trow[t.i0] += t.l0 * g[X];
    trow[t.i1] += t.l1 * g[X];
  }
  const BilinearTapT<T>& t = p.ytaps[Y];
  T* r0 = gR + t.i0 * p.w;
  T* r1 = gR + t.i1 * p.w;
  for (int64_t x = 0; x < p.w; ++x) r0[x] += t.l0 * trow[x];
  for (int64_t x = 0; x < p.w; ++x) r1[x] += t.l1 * trow[x];
}

// The same for one output pixel (Y, X) with gradient 1.
template <typename T>
void scatter_pixel(const CamPlan<T>& p, int64_t Y, int64_t X, T* gR) {
  const BilinearTapT<T>& ty = p.ytaps[Y];
  const BilinearTapT<T>& tx = p.xtaps[X];
  gR[ty.i0 * p.w + tx.i0] += ty.l0 * tx.l0;
  gR[ty.i0 * p.w + tx.i1] += ty.l0 * tx.l1;
  gR[ty.i1 * p.w + tx.i0] += ty.l1 * tx.l0;
  gR[ty.i1 * p.w + tx.i1] += ty.l1 * tx.l1;
}

template <typename T>
struct BackwardScratch {
  std::vector<T> low, relu_low, rows, u, g, gu, trow, t_lo, t_hi;
  explicit BackwardScratch(const CamPlan<T>& p)
      : low(p.h * p.w), relu_low(p.h * p.w), rows(p.n_rows() * p.W), u(p.W), g(p.W), gu(p.W), trow(p.w),
        t_lo(p.h * p.w), t_hi(p.h * p.w) {}
};

// g_low (h x w) of one map whose channel sum L is in s.low, from the gradient of its output
// (H x W at element strides gy, gx).
template <typename T>
void map_backward(const CamPlan<T>& p, bool relu, bool normalize, const T* grad, int64_t gy, int64_t gx,
                  BackwardScratch<T>& s, T* g_low) {
  const int64_t hw = p.h * p.w, H = p.H, W = p.W;
  std::copy(s.low.begin(), s.low.end(), s.relu_low.begin());
  if (relu) relu_inplace(s.relu_low.data(), hw);
  p.resize_rows(s.relu_low.data(), s.rows.data());
  auto grad_row = [&](int64_t Y) -> const T* {
    const T* r = grad + Y * gy;
    if (gx == 1) return r;
    for (int64_t X = 0; X < W; ++X) s.g[X] = r[X * gx];
    return s.g.data();
  };
  std::fill(g_low, g_low + hw, T(0));  // the resize's gradient gathers here, then the ReLU masks it
  if (!normalize) {
    for (int64_t Y = 0; Y < H; ++Y) scatter_row(p, Y, grad_row(Y), s.trow.data(), g_low);
  } else {
    // The exact range of the map as computed (every pixel: the forward pass's extreme-row
    // shortcut may miss a tie by rounding), with the number of pixels at each extreme.
    T lo = std::numeric_limits<T>::infinity(), hi = -lo;
    int64_t n_lo = 0, n_hi = 0;
    bool non_finite = false;
    for (int64_t Y = 0; Y < H; ++Y) {
      p.output_row(s.rows.data(), Y, s.u.data());
      for (int64_t X = 0; X < W; ++X) {
        const T v = s.u[X];
        non_finite |= !(v - v == T(0));
        if (v < lo) {
          lo = v;
          n_lo = 0;
        }
        n_lo += v == lo;
        if (v > hi) {
          hi = v;
          n_hi = 0;
        }
        n_hi += v == hi;
      }
    }
    // A map that normalises to a fixed value (all NaN, or zeros) passes no gradient back.
    if (non_finite || is_constant_map(lo, hi)) return;
    const MinMaxScaleT<T> mm = minmax_scale(lo, hi);
    const T inv_spread = mm.scale * mm.inv;  // d out / d U at every pixel
    // out = (U - lo) / (hi - lo): d out_q / d lo = (out_q - 1) / spread and
    // d out_q / d hi = -out_q / spread, summed against the output's gradient in double.
    double sum_lo = 0.0, sum_hi = 0.0;
    std::fill(s.t_lo.begin(), s.t_lo.end(), T(0));
    std::fill(s.t_hi.begin(), s.t_hi.end(), T(0));
    for (int64_t Y = 0; Y < H; ++Y) {
      p.output_row(s.rows.data(), Y, s.u.data());
      const T* g = grad_row(Y);
      for (int64_t X = 0; X < W; ++X) {
        const T v = s.u[X];
        const T out = minmax_apply(mm, v);
        sum_lo += static_cast<double>(g[X]) * static_cast<double>(out - T(1));
        sum_hi += static_cast<double>(g[X]) * static_cast<double>(out);
        s.gu[X] = g[X] * inv_spread;
        if (v == lo) scatter_pixel(p, Y, X, s.t_lo.data());
        if (v == hi) scatter_pixel(p, Y, X, s.t_hi.data());
      }
      scatter_row(p, Y, s.gu.data(), s.trow.data(), g_low);
    }
    // The min's and the max's gradients, shared evenly by the pixels at each, pass back
    // through the same transposed stencil (linear, so gathered once per extreme above).
    const T per_lo = static_cast<T>(static_cast<double>(inv_spread) * sum_lo / static_cast<double>(n_lo));
    const T per_hi = static_cast<T>(-static_cast<double>(inv_spread) * sum_hi / static_cast<double>(n_hi));
    for (int64_t q = 0; q < hw; ++q) g_low[q] += per_lo * s.t_lo[q] + per_hi * s.t_hi[q];
  }
  if (relu) {
    for (int64_t q = 0; q < hw; ++q) g_low[q] = s.low[q] > T(0) ? g_low[q] : T(0);
  }
}

template <typename scalar_t, typename T>
void cam_backward_cpu_impl(const at::Tensor& grad, const at::Tensor& A, const T* wt, const CamShape& s, bool relu,
                           bool normalize, T* grad_a, T* grad_w) {
  const scalar_t* a_ptr = A.const_data_ptr<scalar_t>();
  const T* g_ptr = grad.const_data_ptr<T>();
  const int64_t sb = A.stride(0), sk = A.stride(1), sh = A.stride(2), sw = A.stride(3);
  // grad is [B,H,W] or [B,C,H,W]
  const int64_t gb = grad.stride(0), gc = s.per_class ? grad.stride(1) : 0;
  const int64_t gy = grad.stride(grad.dim() - 2), gx = grad.stride(grad.dim() - 1);
  const int64_t h = s.h, w = s.w, hw = h * w, C = s.C, K = s.K;
  const CamPlan<T> plan(s);
  std::vector<T> g_low(s.B * C * hw);

  at::parallel_for(0, s.B * C, 1, [&](int64_t begin, int64_t end) {
    BackwardScratch<T> scratch(plan);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / C, c = m % C;
      channel_sum(a_ptr + b * sb, sk, sh, sw, K, h, w, wt + m * K, scratch.low.data());
      map_backward(plan, relu, normalize, g_ptr + b * gb + c * gc, gy, gx, scratch, g_low.data() + m * hw);
    }
  });

  const int64_t grain = std::max<int64_t>(1, 8192 / std::max<int64_t>(1, C * hw));
  at::parallel_for(0, s.B * K, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> a_buf(hw);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / K, k = row % K;
      const scalar_t* a = a_ptr + b * sb + k * sk;
      for (int64_t y = 0; y < h; ++y)
        for (int64_t x = 0; x < w; ++x) a_buf[y * w + x] = static_cast<T>(a[y * sh + x * sw]);
      T* ga = grad_a + row * hw;
      std::fill(ga, ga + hw, T(0));
      for (int64_t c = 0; c < C; ++c) {
        const int64_t m = b * C + c;
        const T* gl = g_low.data() + m * hw;
        const T wk = wt[m * K + k];
        T dot[4] = {T(0), T(0), T(0), T(0)};
        int64_t q = 0;
        for (; q + 4 <= hw; q += 4) {
          for (int j = 0; j < 4; ++j) {
            ga[q + j] += wk * gl[q + j];
            dot[j] += a_buf[q + j] * gl[q + j];
          }
        }
        for (; q < hw; ++q) {
          ga[q] += wk * gl[q];
          dot[0] += a_buf[q] * gl[q];
        }
        grad_w[m * K + k] = (dot[0] + dot[1]) + (dot[2] + dot[3]);
      }
    }
  });
}

std::tuple<at::Tensor, at::Tensor> cam_backward_cpu(const at::Tensor& grad, const at::Tensor& activations,
                                                    const at::Tensor& weights, at::IntArrayRef size, bool relu,
                                                    bool normalize) {
  const CamShape s = check_cam(activations, weights, size);
  check_cam_grad(grad, activations, weights, s);
  const at::ScalarType acc = compute_dtype(activations, weights);
  at::Tensor grad_a = at::empty(activations.sizes(), activations.options().dtype(acc));
  at::Tensor grad_w = at::empty({s.B, s.C, s.K}, weights.options().dtype(acc));
  if (s.B * s.C == 0 || s.K == 0) {
    grad_a.zero_();
    grad_w.zero_();
  } else {
    const at::Tensor wt = weights.to(acc).contiguous();
    ACTCAM_DISPATCH_FLOATS_AND_DOUBLE(activations.scalar_type(), "actcam::cam_backward", [&] {
      with_acc_type(acc, [&](auto zero) {
        using T = decltype(zero);
        cam_backward_cpu_impl<scalar_t, T>(grad, activations, wt.const_data_ptr<T>(), s, relu, normalize,
                                           grad_a.data_ptr<T>(), grad_w.data_ptr<T>());
      });
    });
  }
  return {grad_a.to(activations.scalar_type()), grad_w.view(weights.sizes()).to(weights.scalar_type())};
}

// dst[y * w + x] = T(src[y * sh + x * sw]); a straight copy when the plane is contiguous.
template <typename scalar_t, typename T>
void gather_plane(const scalar_t* src, int64_t sh, int64_t sw, int64_t h, int64_t w, T* dst) {
  if (sw == 1 && sh == w) {
    for (int64_t p = 0; p < h * w; ++p) dst[p] = static_cast<T>(src[p]);
    return;
  }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) dst[y * w + x] = static_cast<T>(src[y * sh + x * sw]);
}

// Sum in eight independent lanes: vectorisable without -ffast-math, and no less exact.
template <typename T>
T lane_sum(const T* v, int64_t n) {
  T acc[8] = {T(0), T(0), T(0), T(0), T(0), T(0), T(0), T(0)};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += v[i + j];
  for (; i < n; ++i) acc[0] += v[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename scalar_t, typename T>
void gradcampp_cpu_impl(const at::Tensor& A, const at::Tensor& G, T* out) {
  const int64_t K = A.size(1), h = A.size(2), w = A.size(3);
  const scalar_t* a_ptr = A.const_data_ptr<scalar_t>();
  const scalar_t* g_ptr = G.const_data_ptr<scalar_t>();
  const int64_t ab = A.stride(0), ak = A.stride(1), ah = A.stride(2), aw = A.stride(3);
  const int64_t gb = G.stride(0), gk = G.stride(1), gh = G.stride(2), gw = G.stride(3);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, h * w));
  const int64_t hw = h * w;
  at::parallel_for(0, A.size(0) * K, grain, [&](int64_t begin, int64_t end) {
    std::vector<T> a_buf(hw), g_buf(hw);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / K, k = row % K;
      // Gather the (image, channel) planes into float buffers once; then every loop below
      // is over contiguous floats, which the compiler vectorises.
      gather_plane(a_ptr + b * ab + k * ak, ah, aw, h, w, a_buf.data());
      gather_plane(g_ptr + b * gb + k * gk, gh, gw, h, w, g_buf.data());
      const T sum_a = lane_sum(a_buf.data(), hw);
      // Eq. 19: alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), 0 where the denominator is 0;
      // w = sum_ij alpha_ij relu(g_ij).
      for (int64_t p = 0; p < hw; ++p) {
        const T gv = g_buf[p];
        const T g2 = gv * gv;
        const T denom = T(2) * g2 + sum_a * g2 * gv;
        // Divide unconditionally by a safe denominator, then select: a division under a
        // condition is not vectorised (it might trap), and the result is the same.
        const T q = g2 / (denom != T(0) ? denom : T(1));
        const T alpha = denom != T(0) ? q : T(0);
        g_buf[p] = alpha * (gv < T(0) ? T(0) : gv);
      }
      out[row] = lane_sum(g_buf.data(), hw);
    }
  });
}

at::Tensor gradcampp_weights_cpu(const at::Tensor& activations, const at::Tensor& grads) {
  check_gradcampp(activations, grads);
  const at::ScalarType acc = compute_dtype(activations, grads);
  at::Tensor out = at::empty({activations.size(0), activations.size(1)}, activations.options().dtype(acc));
  if (out.numel() == 0) return out;
  if (activations.size(2) * activations.size(3) == 0) return out.zero_();
  ACTCAM_DISPATCH_FLOATS_AND_DOUBLE(activations.scalar_type(), "actcam::gradcampp_weights", [&] {
    with_acc_type(acc, [&](auto zero) {
      using T = decltype(zero);
      gradcampp_cpu_impl<scalar_t, T>(activations, grads, out.data_ptr<T>());
    });
  });
  return out;
}

// out[i] = blend_u8(heat[i], image[i]); a free function with restrict pointers and a local
// trip count, so the compiler can prove the loop vectorisable.
void blend_span(const uint8_t* __restrict heat, const uint8_t* __restrict image, uint8_t* __restrict out, int64_t n,
                float w_heat, float w_image) {
  for (int64_t i = 0; i < n; ++i) out[i] = blend_u8(heat[i], image[i], w_heat, w_image);
}

template <typename scalar_t>
void overlay_cpu_impl(const at::Tensor& maps, const at::Tensor& images, double image_weight, uint8_t* out) {
  const int64_t H = maps.size(1), W = maps.size(2);
  const scalar_t* m_ptr = maps.const_data_ptr<scalar_t>();
  const uint8_t* i_ptr = images.const_data_ptr<uint8_t>();
  const int64_t mb = maps.stride(0), mh = maps.stride(1), mw = maps.stride(2);
  const int64_t ib = images.stride(0), ih = images.stride(1), iw = images.stride(2), ic = images.stride(3);
  const float w_img = static_cast<float>(image_weight);
  const float w_heat = static_cast<float>(1.0 - image_weight);
  // An RGB image row whose pixels are packed (iw == 3, ic == 1) blends as one contiguous span.
  const bool packed_rows = iw == 3 && ic == 1;
  at::parallel_for(0, maps.size(0) * H, std::max<int64_t>(1, 16384 / std::max<int64_t>(1, W)),
                   [&](int64_t begin, int64_t end) {
    std::vector<uint8_t> heat(3 * W);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / H, y = row % H;
      const scalar_t* m = m_ptr + b * mb + y * mh;
      const uint8_t* img = i_ptr + b * ib + y * ih;
      uint8_t* o = out + row * W * 3;
      // Two passes: the colour lookups (gathers, scalar), then the blend over the whole row,
      // which the compiler vectorises.
      for (int64_t x = 0; x < W; ++x) {
        const uint8_t* c = kJetRGB + 3 * jet_index(static_cast<float>(m[x * mw]));
        heat[3 * x] = c[0];
        heat[3 * x + 1] = c[1];
        heat[3 * x + 2] = c[2];
      }
      if (packed_rows) {
        blend_span(heat.data(), img, o, 3 * W, w_heat, w_img);
      } else {
        for (int64_t x = 0; x < W; ++x)
          for (int c = 0; c < 3; ++c) o[3 * x + c] = blend_u8(heat[3 * x + c], img[x * iw + c * ic], w_heat, w_img);
      }
    }
  });
}

at::Tensor overlay_cpu(const at::Tensor& maps, const at::Tensor& images, double image_weight) {
  check_overlay(maps, images, image_weight);
  at::Tensor out = at::empty({maps.size(0), maps.size(1), maps.size(2), 3}, images.options());
  if (out.numel() == 0) return out;
  ACTCAM_DISPATCH_FLOATS_AND_DOUBLE(maps.scalar_type(), "actcam::overlay", [&] {
    overlay_cpu_impl<scalar_t>(maps, images, image_weight, out.data_ptr<uint8_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(actcam, CPU, m) {
  m.impl("cam", &cam_cpu);
  m.impl("cam_backward", &cam_backward_cpu);
  m.impl("gradcampp_weights", &gradcampp_weights_cpu);
  m.impl("overlay", &overlay_cpu);
}

}  // namespace actcam
