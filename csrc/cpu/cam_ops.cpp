// CPU ops of actcam: argument checks, the sizes-only plans, scratch and threads. The inner
// loops of cam, cam_from_grads and overlay are in isa/kernels.cpp, compiled once per CPU
// capability and reached through cpu::kernels() (kernels.h, dispatch.cpp).
//
// cam and cam_from_grads read each image's inputs once, in one pass, for up to
// cpu::kClassBlock maps at a time, and write each output pixel once. The channel sum of a
// low-resolution pixel is the sum, in order, of partial sums over fixed segments of channels
// (ChannelSegments, set by K alone). With fewer images than threads, the threads share each
// image instead: its segments, then its output rows (or, with a single segment, the channel
// weights, then pixels of the low-resolution plane, then output rows), so every pixel is
// computed by the same operations in the same order whatever the thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <tuple>
#include <type_traits>
#include <vector>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include "../checks.h"
#include "../jet_colormap.h"
#include "../kernel_math.h"
#include "kernels.h"

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
  cpu::MapPlanView<T> view() const {
    return {h, w, H, W, n_rows(), static_cast<int64_t>(extremes.size()), xtaps.data(), slot_taps.data(),
            src_rows.data(), extremes.data()};
  }

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

// The plan of the last sizes this thread asked for: a stream of same-sized maps (video frames,
// one image at a time) builds it once. The reference stays valid until this thread's next call
// with other sizes; the threads of a parallel_for only read it while the call is in progress.
template <typename T>
const CamPlan<T>& plan_for(const CamShape& s) {
  thread_local std::unique_ptr<CamPlan<T>> last;
  if (!last || last->h != s.h || last->w != s.w || last->H != s.H || last->W != s.W)
    last = std::make_unique<CamPlan<T>>(s);
  return *last;
}

template <typename T>
void relu_inplace(T* v, int64_t n) {
  for (int64_t i = 0; i < n; ++i) v[i] = v[i] < T(0) ? T(0) : v[i];  // written so that NaN passes through
}

// The channel sum in segments of whole channel groups: at most kMaxSegments of them, of at
// least kMinSegment channels, fixed by K alone so that a map has the same bits whether its
// segments are summed by one thread or by several. A low-resolution pixel is segment 0's sum,
// plus segment 1's, and so on; each segment's is one running sum in channel order.
struct ChannelSegments {
  static constexpr int64_t kMaxSegments = 8, kMinSegment = 64;
  int64_t K, size, n;
  explicit ChannelSegments(int64_t K_) : K(K_) {
    const int64_t even = (K + kMaxSegments - 1) / kMaxSegments;
    size = std::max(kMinSegment, (even + cpu::kChannelGroup - 1) / cpu::kChannelGroup * cpu::kChannelGroup);
    n = (K + size - 1) / size;
  }
  int64_t begin(int64_t i) const { return i * size; }
  int64_t end(int64_t i) const { return std::min(K, (i + 1) * size); }
};

int64_t element_size(cpu::Src src) {
  switch (src) {
    case cpu::Src::kHalf:
    case cpu::Src::kBFloat16:
      return 2;
    case cpu::Src::kDouble:
      return 8;
    default:
      return 4;
  }
}

// The job restricted to channels [k0, k1): the same classes and pixels.
template <typename T>
cpu::LowresJob<T> channel_slice(const cpu::LowresJob<T>& j, int64_t k0, int64_t k1) {
  cpu::LowresJob<T> s = j;
  const int64_t es = element_size(j.src);
  s.a = static_cast<const char*>(j.a) + k0 * j.ak * es;
  if (j.g != nullptr) s.g = static_cast<const char*>(j.g) + k0 * j.gk * es;
  if (j.weights != nullptr) s.weights = j.weights + k0;
  s.K = k1 - k0;
  return s;
}

// low[(c - c0) * hw + p] += part[...] for the job's classes and pixels.
template <typename T>
void add_partial(const cpu::LowresJob<T>& j, const T* part, T* low) {
  const int64_t hw = j.h * j.w;
  for (int64_t c = 0; c < j.cn; ++c)
    for (int64_t p = j.p0; p < j.p1; ++p) low[c * hw + p] += part[c * hw + p];
}

// The job's low-resolution maps (into j.low), segment by segment (ChannelSegments); part holds
// j.cn * h * w for a segment's partial sums.
template <typename T>
void lowres_in_segments(const cpu::Ops<T>& ops, const cpu::LowresJob<T>& j, T* part) {
  const ChannelSegments seg(j.K);
  if (seg.n <= 1) return ops.lowres(j);
  for (int64_t i = 0; i < seg.n; ++i) {
    cpu::LowresJob<T> js = channel_slice(j, seg.begin(i), seg.end(i));
    js.low = i == 0 ? j.low : part;
    ops.lowres(js);
    if (i > 0) add_partial(j, part, j.low);
  }
}

cpu::Src src_of(at::ScalarType t) {
  switch (t) {
    case at::kHalf:
      return cpu::Src::kHalf;
    case at::kBFloat16:
      return cpu::Src::kBFloat16;
    case at::kDouble:
      return cpu::Src::kDouble;
    default:
      return cpu::Src::kFloat;
  }
}

// One map after its low-resolution plane: ReLU, resize, range and output rows. rows holds
// plan.n_rows() * W. With share_rows, all threads write the output rows; with stream, in
// streaming stores (Ops::write_rows).
template <typename T>
void finish_map(const cpu::Ops<T>& ops, const CamPlan<T>& plan, const cpu::MapPlanView<T>& v, bool relu,
                bool normalize, T* low, T* rows, T* out, bool share_rows, bool stream) {
  const int64_t H = plan.H, W = plan.W;
  if (relu) ops.relu(low, plan.h * plan.w);
  ops.resize_rows(v, low, rows, 0, plan.n_rows());
  auto write = [&](const MinMaxScaleT<T>* mm) {
    if (!share_rows) return ops.write_rows(v, rows, mm, out, 0, H, stream);
    at::parallel_for(0, H, std::max<int64_t>(1, 16384 / W),
                     [&](int64_t y0, int64_t y1) { ops.write_rows(v, rows, mm, out, y0, y1, stream); });
  };
  if (!normalize) return write(nullptr);
  // The map's range, from the extreme output rows only (see extreme_rows), then a single
  // pass that writes every pixel already normalised.
  const cpu::MapRange<T> r = ops.range(v, rows);
  if (r.non_finite || is_constant_map(r.lo, r.hi)) {
    std::fill(out, out + H * W, r.non_finite ? std::numeric_limits<T>::quiet_NaN() : T(0));
    return;
  }
  const MinMaxScaleT<T> mm = minmax_scale(r.lo, r.hi);
  write(&mm);
}

// The work of one cam or cam_from_grads call. job holds image 0's pointers, the strides and
// the mode; a_sb, g_sb (bytes) and w_sb (elements) step from one image to the next.
template <typename T>
void cam_forward(const cpu::LowresJob<T>& job, int64_t a_sb, int64_t g_sb, int64_t w_sb, const CamShape& s, bool relu,
                 bool normalize, T* out) {
  const cpu::Ops<T>& ops = cpu::ops<T>();
  const CamPlan<T>& plan = plan_for<T>(s);
  const cpu::MapPlanView<T> v = plan.view();
  const int64_t hw = s.h * s.w, HW = s.H * s.W, C = s.C, K = s.K;
  const int64_t blocks_per_image = (C + cpu::kClassBlock - 1) / cpu::kClassBlock;
  const int64_t units = s.B * blocks_per_image;
  const int64_t cb_max = std::min(C, cpu::kClassBlock);
  auto unit_job = [&](int64_t u) {
    const int64_t b = u / blocks_per_image, c0 = (u % blocks_per_image) * cpu::kClassBlock;
    cpu::LowresJob<T> j = job;
    j.a = static_cast<const char*>(job.a) + b * a_sb;
    if (job.g != nullptr) j.g = static_cast<const char*>(job.g) + b * g_sb;
    if (job.weights != nullptr) j.weights = job.weights + b * w_sb + c0 * job.wc;
    j.c0 = c0;
    j.cn = std::min(cpu::kClassBlock, C - c0);
    j.p0 = 0;
    j.p1 = hw;
    return j;
  };
  auto out_of = [&](int64_t u, int64_t c) { return out + ((u / blocks_per_image) * C + c) * HW; };
  // An output of several MiB does not stay in the caches until its reader comes: it is written
  // around them, which saves reading each line in before it is overwritten.
  const bool stream = s.B * C * HW * static_cast<int64_t>(sizeof(T)) >= (int64_t{4} << 20);
  // Each thread its own images, unless there are fewer than threads and each is big enough
  // to share. Measured on 2 cores (B=1, from gradients, interleaved with the torch chain):
  // sharing wins from ~1e5 elements read + written (K=512, 7x7 -> 224x224: 42 us alone, 36
  // shared; K=2048: 60 and 44) and neither wins below ~6e4 (K=512, 7x7 -> 64x64: 26 and 25).
  const int64_t work = K * hw * (job.mode == cpu::kWeights ? 1 : 2) + HW;
  const bool share = units < at::get_num_threads() && !at::in_parallel_region() && work >= (1 << 16);
  if (!share) {
    at::parallel_for(0, units, 1, [&](int64_t begin, int64_t end) {
      std::vector<T> low(cb_max * hw), part(cb_max * hw), rows(plan.n_rows() * s.W),
          scratch(cpu::lowres_scratch_size(hw));
      for (int64_t u = begin; u < end; ++u) {
        cpu::LowresJob<T> j = unit_job(u);
        j.low = low.data();
        j.scratch = scratch.data();
        lowres_in_segments(ops, j, part.data());
        for (int64_t c = 0; c < j.cn; ++c)
          finish_map(ops, plan, v, relu, normalize, low.data() + c * hw, rows.data(), out_of(u, j.c0 + c), false, stream);
      }
    });
    return;
  }
  std::vector<T> low(cb_max * hw), rows(plan.n_rows() * s.W);
  const ChannelSegments seg(K);
  if (seg.n > 1) {
    // The threads share the image's segments, each into its own partial sums, which are then
    // added in segment order as lowres_in_segments adds them.
    std::vector<T> parts(seg.n * cb_max * hw);
    for (int64_t u = 0; u < units; ++u) {
      const cpu::LowresJob<T> j = unit_job(u);
      at::parallel_for(0, seg.n, 1, [&](int64_t i0, int64_t i1) {
        std::vector<T> scratch(cpu::lowres_scratch_size(hw));
        for (int64_t i = i0; i < i1; ++i) {
          cpu::LowresJob<T> js = channel_slice(j, seg.begin(i), seg.end(i));
          js.low = parts.data() + i * cb_max * hw;
          js.scratch = scratch.data();
          ops.lowres(js);
        }
      });
      std::copy(parts.begin(), parts.begin() + j.cn * hw, low.begin());
      for (int64_t i = 1; i < seg.n; ++i) add_partial(j, parts.data() + i * cb_max * hw, low.data());
      for (int64_t c = 0; c < j.cn; ++c)
        finish_map(ops, plan, v, relu, normalize, low.data() + c * hw, rows.data(), out_of(u, j.c0 + c), true, stream);
    }
    return;
  }
  // A single segment: the channel weights by channels, then the plane by pixels.
  std::vector<T> weights;
  const bool weights_first = job.mode == cpu::kGradCam || job.mode == cpu::kXGradCam;
  if (weights_first) weights.resize(cb_max * K);
  constexpr int64_t kPixelBlock = 16;  // a vector of floats: each thread gets whole vectors
  const int64_t n_blocks = (hw + kPixelBlock - 1) / kPixelBlock;
  const int64_t pixel_grain = std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(1, kPixelBlock * K));
  for (int64_t u = 0; u < units; ++u) {
    cpu::LowresJob<T> j = unit_job(u);
    j.low = low.data();
    if (weights_first) {
      at::parallel_for(0, K, std::max<int64_t>(1, (1 << 14) / hw), [&](int64_t k0, int64_t k1) {
        std::vector<T> scratch(cpu::lowres_scratch_size(hw));
        cpu::LowresJob<T> jk = j;
        jk.scratch = scratch.data();
        ops.channel_weights(jk, k0, k1, weights.data());
      });
      j.weights = weights.data();
      j.wc = K;
    }
    at::parallel_for(0, n_blocks, pixel_grain, [&](int64_t q0, int64_t q1) {
      cpu::LowresJob<T> jp = j;
      jp.p0 = q0 * kPixelBlock;
      jp.p1 = std::min(hw, q1 * kPixelBlock);
      std::vector<T> scratch(cpu::lowres_scratch_size(jp.p1 - jp.p0));
      jp.scratch = scratch.data();
      ops.lowres(jp);
    });
    for (int64_t c = 0; c < j.cn; ++c)
      finish_map(ops, plan, v, relu, normalize, low.data() + c * hw, rows.data(), out_of(u, j.c0 + c), true, stream);
  }
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
  with_acc_type(acc, [&](auto zero) {
    using T = decltype(zero);
    cpu::LowresJob<T> job{};
    job.mode = cpu::kWeights;
    job.src = src_of(activations.scalar_type());
    job.a = activations.const_data_ptr();
    job.ak = activations.stride(1);
    job.ah = activations.stride(2);
    job.aw = activations.stride(3);
    job.weights = wt.const_data_ptr<T>();
    job.wc = s.K;
    job.K = s.K;
    job.h = s.h;
    job.w = s.w;
    cam_forward<T>(job, activations.stride(0) * activations.element_size(), 0, s.C * s.K, s, relu, normalize,
                   out.data_ptr<T>());
  });
  return out;
}

at::Tensor cam_from_grads_cpu(const at::Tensor& activations, const at::Tensor& grads, c10::string_view mode,
                              at::IntArrayRef size, bool relu, bool normalize) {
  const std::string mode_name(mode);
  const CamShape s = check_cam_from_grads(activations, grads, mode_name, size);
  const at::ScalarType acc = compute_dtype(activations, grads);
  at::Tensor out = at::empty(cam_out_sizes(s), activations.options().dtype(acc));
  if (out.numel() == 0) return out;
  const int64_t d = grads.dim();
  with_acc_type(acc, [&](auto zero) {
    using T = decltype(zero);
    cpu::LowresJob<T> job{};
    job.mode = cpu::kGradCam + check_mode(mode_name);
    job.src = src_of(activations.scalar_type());
    job.a = activations.const_data_ptr();
    job.ak = activations.stride(1);
    job.ah = activations.stride(2);
    job.aw = activations.stride(3);
    job.g = grads.const_data_ptr();
    job.gc = s.per_class ? grads.stride(1) : 0;
    job.gk = grads.stride(d - 3);
    job.gh = grads.stride(d - 2);
    job.gw = grads.stride(d - 1);
    job.K = s.K;
    job.h = s.h;
    job.w = s.w;
    cam_forward<T>(job, activations.stride(0) * activations.element_size(), grads.stride(0) * grads.element_size(),
                   0, s, relu, normalize, out.data_ptr<T>());
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

// The transposed bilinear resize (the resize's gradient), in two steps: each output row's
// gradient is added, at full width and vectorised, into the source rows it read (as slots,
// CamPlan::slot_taps); each of those rows is then folded back to w columns once, instead of
// once per output row.
template <typename T>
struct TransposedResize {
  const CamPlan<T>& p;
  T* acc;  // p.n_rows() x W

  void begin() const { std::fill(acc, acc + p.n_rows() * p.W, T(0)); }
  void add_row(int64_t Y, const T* g) const {
    const BilinearTapT<T>& t = p.slot_taps[Y];
    T* r0 = acc + t.i0 * p.W;
    T* r1 = acc + t.i1 * p.W;
    const T l0 = t.l0, l1 = t.l1;
    for (int64_t X = 0; X < p.W; ++X) r0[X] += l0 * g[X];
    for (int64_t X = 0; X < p.W; ++X) r1[X] += l1 * g[X];
  }
  // gR (h x w) += the folded rows; trow is w values of scratch.
  void finish(T* trow, T* gR) const {
    for (int64_t j = 0; j < p.n_rows(); ++j) {
      const T* r = acc + j * p.W;
      std::fill(trow, trow + p.w, T(0));
      for (int64_t X = 0; X < p.W; ++X) {
        const BilinearTapT<T>& t = p.xtaps[X];
        trow[t.i0] += t.l0 * r[X];
        trow[t.i1] += t.l1 * r[X];
      }
      T* dst = gR + p.src_rows[j] * p.w;
      for (int64_t x = 0; x < p.w; ++x) dst[x] += trow[x];
    }
  }
};

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
  std::vector<T> low, relu_low, rows, u, g, gu, trow, t_lo, t_hi, acc;
  explicit BackwardScratch(const CamPlan<T>& p)
      : low(p.h * p.w), relu_low(p.h * p.w), rows(p.n_rows() * p.W), u(p.W), g(p.W), gu(p.W), trow(p.w),
        t_lo(p.h * p.w), t_hi(p.h * p.w), acc(p.n_rows() * p.W) {}
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
  const TransposedResize<T> resize_t{p, s.acc.data()};
  resize_t.begin();
  if (!normalize) {
    for (int64_t Y = 0; Y < H; ++Y) resize_t.add_row(Y, grad_row(Y));
    resize_t.finish(s.trow.data(), g_low);
  } else {
    // The range the forward pass normalised with: from the extreme output rows (extreme_rows),
    // by the same kernel, so the map differentiated is the one cam returned.
    const cpu::MapRange<T> r = cpu::ops<T>().range(p.view(), s.rows.data());
    const T lo = r.lo, hi = r.hi;
    // A map that normalises to a fixed value (all NaN, or zeros) passes no gradient back.
    if (r.non_finite || is_constant_map(lo, hi)) return;
    const MinMaxScaleT<T> mm = minmax_scale(lo, hi);
    const T inv_spread = mm.scale * mm.inv;  // d out / d U at every pixel
    // out = (U - lo) / (hi - lo): d out_q / d lo = (out_q - 1) / spread and
    // d out_q / d hi = -out_q / spread, summed against the output's gradient: sum g * out and
    // sum g per row in T (vectorised), across rows in double.
    // kLanes independent accumulators per row, combined in a fixed order: the compiler keeps
    // them in vector registers without reassociating anything.
    constexpr int kLanes = 8;
    double sum_go = 0.0, sum_g = 0.0;
    int64_t n_lo = 0, n_hi = 0;
    std::fill(s.t_lo.begin(), s.t_lo.end(), T(0));
    std::fill(s.t_hi.begin(), s.t_hi.end(), T(0));
    for (int64_t Y = 0; Y < H; ++Y) {
      p.output_row(s.rows.data(), Y, s.u.data());
      const T* g = grad_row(Y);
      const T* u = s.u.data();
      T* gu = s.gu.data();
      T go_l[kLanes] = {}, g_l[kLanes] = {};
      int at_l[kLanes] = {};
      int64_t X = 0;
      for (; X + kLanes <= W; X += kLanes) {
        for (int j = 0; j < kLanes; ++j) {
          const T v = u[X + j], gv = g[X + j];
          go_l[j] += gv * minmax_apply(mm, v);
          g_l[j] += gv;
          gu[X + j] = gv * inv_spread;
          at_l[j] |= (v == lo) | (v == hi);
        }
      }
      for (; X < W; ++X) {
        const T v = u[X], gv = g[X];
        go_l[0] += gv * minmax_apply(mm, v);
        g_l[0] += gv;
        gu[X] = gv * inv_spread;
        at_l[0] |= (v == lo) | (v == hi);
      }
      int at_extreme = 0;
      for (int j = 0; j < kLanes; ++j) {
        sum_go += static_cast<double>(go_l[j]);
        sum_g += static_cast<double>(g_l[j]);
        at_extreme |= at_l[j];
      }
      if (at_extreme) {  // few rows hold an extreme: find its pixels there only
        for (int64_t X = 0; X < W; ++X) {
          if (u[X] == lo) {
            scatter_pixel(p, Y, X, s.t_lo.data());
            ++n_lo;
          }
          if (u[X] == hi) {
            scatter_pixel(p, Y, X, s.t_hi.data());
            ++n_hi;
          }
        }
      }
      resize_t.add_row(Y, gu);
    }
    resize_t.finish(s.trow.data(), g_low);
    const double sum_lo = sum_go - sum_g, sum_hi = sum_go;
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

  // The channel sums are the forward kernel's, so the map differentiated is the one cam returned.
  cpu::LowresJob<T> job{};
  job.mode = cpu::kWeights;
  job.src = src_of(A.scalar_type());
  job.ak = sk;
  job.ah = sh;
  job.aw = sw;
  job.wc = K;
  job.cn = 1;
  job.K = K;
  job.h = h;
  job.w = w;
  job.p1 = hw;
  at::parallel_for(0, s.B * C, 1, [&](int64_t begin, int64_t end) {
    BackwardScratch<T> scratch(plan);
    std::vector<T> lowres_scratch(cpu::lowres_scratch_size(hw)), part(hw);
    for (int64_t m = begin; m < end; ++m) {
      const int64_t b = m / C, c = m % C;
      cpu::LowresJob<T> j = job;
      j.a = a_ptr + b * sb;
      j.weights = wt + m * K;
      j.low = scratch.low.data();
      j.scratch = lowres_scratch.data();
      lowres_in_segments(cpu::ops<T>(), j, part.data());
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
  const auto blend = cpu::kernels().blend_span;
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
        blend(heat.data(), img, o, 3 * W, w_heat, w_img);
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
  m.impl("cam_from_grads", &cam_from_grads_cpu);
  m.impl("gradcampp_weights", &gradcampp_weights_cpu);
  m.impl("overlay", &overlay_cpu);
}

}  // namespace actcam
