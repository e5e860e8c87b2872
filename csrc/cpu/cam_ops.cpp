// CPU kernels of the actcam ops. Each op is one at::parallel_for over independent units
// (maps for cam, (image, channel) rows for gradcampp_weights, image rows for overlay) that
// reads its inputs once through their strides and writes its output once.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../kernel_math.h"
#include "../checks.h"
#include "../jet_colormap.h"

namespace actcam {
namespace {

// low[p] = sum_k wt[k] * A[k, p] in float32, for one image's activations A (strides in elements).
template <typename scalar_t>
void channel_sum(const scalar_t* A, int64_t sk, int64_t sh, int64_t sw, int64_t K, int64_t h, int64_t w,
                 const float* wt, float* low) {
  const int64_t hw = h * w;
  if (sw == 1 && sh == w) {
    // Each channel plane is contiguous (contiguous or sliced along B/K): stream the planes.
    std::fill(low, low + hw, 0.f);
    for (int64_t k = 0; k < K; ++k) {
      const scalar_t* a = A + k * sk;
      const float wk = wt[k];
      for (int64_t p = 0; p < hw; ++p) low[p] += wk * static_cast<float>(a[p]);
    }
  } else if (sk == 1) {
    // channels_last: the K values of one pixel are contiguous, so each pixel is a dot product.
    // Four partial sums give the CPU independent chains without reassociating per element.
    for (int64_t y = 0; y < h; ++y) {
      for (int64_t x = 0; x < w; ++x) {
        const scalar_t* a = A + y * sh + x * sw;
        float acc[4] = {0.f, 0.f, 0.f, 0.f};
        int64_t k = 0;
        for (; k + 4 <= K; k += 4) {
          for (int j = 0; j < 4; ++j) acc[j] += wt[k + j] * static_cast<float>(a[k + j]);
        }
        for (; k < K; ++k) acc[0] += wt[k] * static_cast<float>(a[k]);
        low[y * w + x] = (acc[0] + acc[1]) + (acc[2] + acc[3]);
      }
    }
  } else {
    std::fill(low, low + hw, 0.f);
    for (int64_t k = 0; k < K; ++k) {
      const float wk = wt[k];
      for (int64_t y = 0; y < h; ++y) {
        const scalar_t* a = A + k * sk + y * sh;
        for (int64_t x = 0; x < w; ++x) low[y * w + x] += wk * static_cast<float>(a[x * sw]);
      }
    }
  }
}

// Running min, max and "saw a NaN or inf" of a map, in kLanes independent lanes: one SSE
// register each on x86-64 (explicit intrinsics, because GCC will not turn a float min/max
// reduction into minps/maxps without -ffast-math), plain lanes elsewhere.
struct MapRange {
  static constexpr int kLanes = 4;
  float lo[kLanes], hi[kLanes], zero[kLanes];  // zero[j] accumulates v - v: 0, or NaN after a NaN/inf

  MapRange() {
    for (int j = 0; j < kLanes; ++j) {
      lo[j] = std::numeric_limits<float>::infinity();
      hi[j] = -std::numeric_limits<float>::infinity();
      zero[j] = 0.f;
    }
  }
  void add(int j, float x) {
    lo[j] = x < lo[j] ? x : lo[j];
    hi[j] = x > hi[j] ? x : hi[j];
    zero[j] += x - x;
  }
  // out[i] = a * r0[i] + b * r1[i] (one output row of the vertical resize), tracking the range
  // in the same pass while the values are in registers.
  void blend_rows(float a, const float* __restrict r0, float b, const float* __restrict r1, float* __restrict out,
                  int64_t n) {
    int64_t i = 0;
#if defined(__SSE2__)
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
#endif
    for (; i < n; ++i) {
      out[i] = a * r0[i] + b * r1[i];
      add(static_cast<int>(i % kLanes), out[i]);
    }
  }
  float min() const { return *std::min_element(lo, lo + kLanes); }
  float max() const { return *std::max_element(hi, hi + kLanes); }
  bool non_finite() const {
    float z = 0.f;
    for (int j = 0; j < kLanes; ++j) z += zero[j];
    return z != 0.f;
  }
};

// The output rows whose values bound the whole resized map. Output row Y blends source rows
// i0 and i1 with weight l1 that grows with Y while (i0, i1) stays the same, so along every
// column the values between the first and the last row of such a run lie between the values
// of those two rows. The map's min and max are therefore reached on the first and last row
// of each run: about 2h rows to scan instead of H (for upsampling, H >> h).
std::vector<int64_t> extreme_rows(const std::vector<BilinearTap>& ytaps) {
  std::vector<int64_t> rows;
  const int64_t H = static_cast<int64_t>(ytaps.size());
  for (int64_t Y = 0; Y < H; ++Y) {
    const bool first = Y == 0 || ytaps[Y].i0 != ytaps[Y - 1].i0 || ytaps[Y].i1 != ytaps[Y - 1].i1;
    const bool last = Y == H - 1 || ytaps[Y].i0 != ytaps[Y + 1].i0 || ytaps[Y].i1 != ytaps[Y + 1].i1;
    if (first || last) rows.push_back(Y);
  }
  return rows;
}

// The source rows that some output row reads, in increasing order, and every output row's
// vertical taps renumbered as slots into that list. The horizontal pass resizes only these
// rows, at most min(h, 2H) of them, so its scratch is bounded by the output's size instead of
// growing with h x W (a tall map downsampled to a wide one).
struct RowSlots {
  std::vector<int64_t> src;         // slot -> source row
  std::vector<BilinearTap> taps;    // per output row: i0, i1 are slots
};

RowSlots row_slots(const std::vector<BilinearTap>& ytaps, int64_t h) {
  RowSlots r;
  std::vector<int64_t> slot(h, -1);
  r.taps = ytaps;
  for (BilinearTap& t : r.taps) {
    // i0 and i1 never decrease with the output row, so the slots come out in increasing order.
    for (int64_t* i : {&t.i0, &t.i1}) {
      if (slot[*i] < 0) {
        slot[*i] = static_cast<int64_t>(r.src.size());
        r.src.push_back(*i);
      }
      *i = slot[*i];
    }
  }
  return r;
}

// out[i] = clamp(minmax_apply(a * r0[i] + b * r1[i]), 0, 1): one output row, resized and
// normalised in one pass. The clamp absorbs the rounding by which a row between two extreme
// rows can land a few ulp outside their range.
void blend_rows_normalized(float a, const float* __restrict r0, float b, const float* __restrict r1,
                           const MinMaxScale mm, float* __restrict out, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float v = minmax_apply(mm, a * r0[i] + b * r1[i]);
    out[i] = v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
  }
}

template <typename scalar_t>
void cam_cpu_impl(const at::Tensor& A, const at::Tensor& wf, const CamShape& s, bool relu, bool normalize,
                  float* out) {
  const scalar_t* a_ptr = A.const_data_ptr<scalar_t>();
  const float* w_ptr = wf.const_data_ptr<float>();
  const int64_t sb = A.stride(0), sk = A.stride(1), sh = A.stride(2), sw = A.stride(3);
  const int64_t h = s.h, w = s.w, H = s.H, W = s.W;

  // Bilinear taps depend only on the sizes: compute them once for all maps.
  std::vector<BilinearTap> ytaps(H), xtaps(W);
  const float scale_y = bilinear_scale(h, H), scale_x = bilinear_scale(w, W);
  for (int64_t Y = 0; Y < H; ++Y) ytaps[Y] = bilinear_tap(scale_y, Y, h);
  for (int64_t X = 0; X < W; ++X) xtaps[X] = bilinear_tap(scale_x, X, w);
  const RowSlots slots = row_slots(ytaps, h);
  const int64_t n_rows = static_cast<int64_t>(slots.src.size());
  ytaps = slots.taps;  // from here on, i0 and i1 index the resized rows below

  const std::vector<int64_t> extremes = extreme_rows(ytaps);

  at::parallel_for(0, s.B * s.C, 1, [&](int64_t begin, int64_t end) {
    std::vector<float> low(h * w), rows(n_rows * W), scratch(W);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / s.C;
      channel_sum(a_ptr + b * sb, sk, sh, sw, s.K, h, w, w_ptr + m * s.K, low.data());
      if (relu) {
        for (float& v : low) v = v < 0.f ? 0.f : v;  // written so that NaN passes through
      }
      // Separable resize: every source row that is read to width W, then blend two rows per
      // output row.
      for (int64_t j = 0; j < n_rows; ++j) {
        const float* src = low.data() + slots.src[j] * w;
        float* r = rows.data() + j * W;
        for (int64_t X = 0; X < W; ++X) {
          const BilinearTap& t = xtaps[X];
          r[X] = t.l0 * src[t.i0] + t.l1 * src[t.i1];
        }
      }
      float* o_map = out + m * H * W;
      if (!normalize) {
        for (int64_t Y = 0; Y < H; ++Y) {
          const BilinearTap& t = ytaps[Y];
          const float* r0 = rows.data() + t.i0 * W;
          const float* r1 = rows.data() + t.i1 * W;
          float* o = o_map + Y * W;
          for (int64_t X = 0; X < W; ++X) o[X] = t.l0 * r0[X] + t.l1 * r1[X];
        }
        continue;
      }
      // The map's range, from the extreme output rows only (see extreme_rows), then a single
      // pass that writes every pixel already normalised.
      MapRange range;
      for (const int64_t Y : extremes) {
        const BilinearTap& t = ytaps[Y];
        range.blend_rows(t.l0, rows.data() + t.i0 * W, t.l1, rows.data() + t.i1 * W, scratch.data(), W);
      }
      const float lo = range.min(), hi = range.max();
      if (range.non_finite() || is_constant_map(lo, hi)) {
        std::fill(o_map, o_map + H * W, range.non_finite() ? std::numeric_limits<float>::quiet_NaN() : 0.f);
        continue;
      }
      const MinMaxScale mm = minmax_scale(lo, hi);
      for (int64_t Y = 0; Y < H; ++Y) {
        const BilinearTap& t = ytaps[Y];
        blend_rows_normalized(t.l0, rows.data() + t.i0 * W, t.l1, rows.data() + t.i1 * W, mm, o_map + Y * W, W);
      }
    }
  });
}

at::Tensor cam_cpu(const at::Tensor& activations, const at::Tensor& weights, at::IntArrayRef size, bool relu,
                   bool normalize) {
  const CamShape s = check_cam(activations, weights, size);
  auto out_sizes = s.per_class ? std::vector<int64_t>{s.B, s.C, s.H, s.W} : std::vector<int64_t>{s.B, s.H, s.W};
  at::Tensor out = at::empty(out_sizes, activations.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  // The weights are small ([B,C,K]); one float32 copy makes the inner loops dtype-free.
  const at::Tensor wf = weights.to(at::kFloat).contiguous();
  ACTCAM_DISPATCH_FLOATS(activations.scalar_type(), "actcam::cam", [&] {
    cam_cpu_impl<scalar_t>(activations, wf, s, relu, normalize, out.data_ptr<float>());
  });
  return out;
}

// dst[y * w + x] = float(src[y * sh + x * sw]); a straight copy when the plane is contiguous.
template <typename scalar_t>
void gather_plane(const scalar_t* src, int64_t sh, int64_t sw, int64_t h, int64_t w, float* dst) {
  if (sw == 1 && sh == w) {
    for (int64_t p = 0; p < h * w; ++p) dst[p] = static_cast<float>(src[p]);
    return;
  }
  for (int64_t y = 0; y < h; ++y)
    for (int64_t x = 0; x < w; ++x) dst[y * w + x] = static_cast<float>(src[y * sh + x * sw]);
}

// Sum in eight independent lanes: vectorisable without -ffast-math, and no less exact.
float lane_sum(const float* v, int64_t n) {
  float acc[8] = {0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f, 0.f};
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    for (int j = 0; j < 8; ++j) acc[j] += v[i + j];
  for (; i < n; ++i) acc[0] += v[i];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

template <typename scalar_t>
void gradcampp_cpu_impl(const at::Tensor& A, const at::Tensor& G, float* out) {
  const int64_t K = A.size(1), h = A.size(2), w = A.size(3);
  const scalar_t* a_ptr = A.const_data_ptr<scalar_t>();
  const scalar_t* g_ptr = G.const_data_ptr<scalar_t>();
  const int64_t ab = A.stride(0), ak = A.stride(1), ah = A.stride(2), aw = A.stride(3);
  const int64_t gb = G.stride(0), gk = G.stride(1), gh = G.stride(2), gw = G.stride(3);
  const int64_t grain = std::max<int64_t>(1, 16384 / std::max<int64_t>(1, h * w));
  const int64_t hw = h * w;
  at::parallel_for(0, A.size(0) * K, grain, [&](int64_t begin, int64_t end) {
    std::vector<float> a_buf(hw), g_buf(hw);
    for (int64_t row = begin; row < end; ++row) {
      const int64_t b = row / K, k = row % K;
      // Gather the (image, channel) planes into float buffers once; then every loop below
      // is over contiguous floats, which the compiler vectorises.
      gather_plane(a_ptr + b * ab + k * ak, ah, aw, h, w, a_buf.data());
      gather_plane(g_ptr + b * gb + k * gk, gh, gw, h, w, g_buf.data());
      const float sum_a = lane_sum(a_buf.data(), hw);
      // Eq. 19: alpha = g^2 / (2 g^2 + (sum_ab A_ab) g^3), 0 where the denominator is 0;
      // w = sum_ij alpha_ij relu(g_ij).
      for (int64_t p = 0; p < hw; ++p) {
        const float gv = g_buf[p];
        const float g2 = gv * gv;
        const float denom = 2.f * g2 + sum_a * g2 * gv;
        // Divide unconditionally by a safe denominator, then select: a division under a
        // condition is not vectorised (it might trap), and the result is the same.
        const float q = g2 / (denom != 0.f ? denom : 1.f);
        const float alpha = denom != 0.f ? q : 0.f;
        g_buf[p] = alpha * (gv < 0.f ? 0.f : gv);
      }
      out[row] = lane_sum(g_buf.data(), hw);
    }
  });
}

at::Tensor gradcampp_weights_cpu(const at::Tensor& activations, const at::Tensor& grads) {
  check_gradcampp(activations, grads);
  at::Tensor out = at::empty({activations.size(0), activations.size(1)}, activations.options().dtype(at::kFloat));
  if (out.numel() == 0) return out;
  if (activations.size(2) * activations.size(3) == 0) return out.zero_();
  ACTCAM_DISPATCH_FLOATS(activations.scalar_type(), "actcam::gradcampp_weights", [&] {
    gradcampp_cpu_impl<scalar_t>(activations, grads, out.data_ptr<float>());
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
  ACTCAM_DISPATCH_FLOATS(maps.scalar_type(), "actcam::overlay", [&] {
    overlay_cpu_impl<scalar_t>(maps, images, image_weight, out.data_ptr<uint8_t>());
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(actcam, CPU, m) {
  m.impl("cam", &cam_cpu);
  m.impl("gradcampp_weights", &gradcampp_weights_cpu);
  m.impl("overlay", &overlay_cpu);
}

}  // namespace actcam
