// Argument checks shared by the CPU and CUDA kernels.
//
// The messages match actcam_ext/ops/_checks.py (used by the op wrappers, the fake kernels and
// the reference), so a caller sees the same ValueError whichever path runs.
#pragma once

#include <ATen/ATen.h>

#include <string>
#include <vector>

namespace actcam {

// float32, float16 and bfloat16 everywhere; float64 on the CPU (the CUDA kernels have no
// float64 instantiation; actcam_ext.ops runs CUDA float64 through the reference instead).
inline void check_float(const at::Tensor& t, const char* name) {
  const auto s = t.scalar_type();
  const bool cpu = t.device().is_cpu();
  TORCH_CHECK_VALUE(s == at::kFloat || s == at::kHalf || s == at::kBFloat16 || (cpu && s == at::kDouble), "actcam: ",
                    name, " must be float32, float16 or bfloat16 (or float64", cpu ? "" : " on the CPU", "), got ", s);
}

// The dtype the ops compute in and return: float64 when an input is float64, else float32.
inline at::ScalarType compute_dtype(const at::Tensor& a, const at::Tensor& b) {
  return a.scalar_type() == at::kDouble || b.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

inline void check_rank(const at::Tensor& t, const char* name, int64_t rank, const char* layout) {
  TORCH_CHECK_VALUE(t.dim() == rank, "actcam: ", name, " must be a ", rank, "-D tensor ", layout,
                    ", got shape ", t.sizes());
}

inline void check_same_device(const at::Tensor& a, const char* an, const at::Tensor& b, const char* bn) {
  TORCH_CHECK_VALUE(a.device() == b.device(), "actcam: ", an, " and ", bn,
                    " must be on the same device, got ", a.device(), " and ", b.device());
}

// Shapes of one cam call: B images, C maps per image (1 for [B,K] weights), K channels,
// h x w activations resized to H x W.
struct CamShape {
  int64_t B, C, K, h, w, H, W;
  bool per_class;
};

inline CamShape check_cam(const at::Tensor& activations, const at::Tensor& weights, at::IntArrayRef size) {
  // size first: the Python wrapper validates it before it reaches a kernel, so this order
  // gives the same first error on every path.
  TORCH_CHECK_VALUE(size.size() == 2, "actcam: size must be two integers (H, W), got ", size);
  TORCH_CHECK_VALUE(size[0] > 0 && size[1] > 0, "actcam: size must be positive, got ", size);
  check_float(activations, "activations");
  check_float(weights, "weights");
  check_rank(activations, "activations", 4, "[B,K,h,w]");
  TORCH_CHECK_VALUE(weights.dim() == 2 || weights.dim() == 3,
                    "actcam: weights must be a 2-D or 3-D tensor [B,K] or [B,C,K], got shape ", weights.sizes());
  check_same_device(activations, "activations", weights, "weights");
  CamShape s;
  s.B = activations.size(0);
  s.K = activations.size(1);
  s.h = activations.size(2);
  s.w = activations.size(3);
  TORCH_CHECK_VALUE(s.h > 0 && s.w > 0, "actcam: activations must have a non-empty spatial size, got shape ",
                    activations.sizes());
  TORCH_CHECK_VALUE(weights.size(0) == s.B, "actcam: weights must have the batch size of activations (", s.B,
                    "), got shape ", weights.sizes());
  TORCH_CHECK_VALUE(weights.size(-1) == s.K, "actcam: weights must have K=", s.K,
                    " channels in its last dimension (activations is ", activations.sizes(), "), got shape ",
                    weights.sizes());
  s.per_class = weights.dim() == 3;
  s.C = s.per_class ? weights.size(1) : 1;
  s.H = size[0];
  s.W = size[1];
  return s;
}

// cam_backward's grad: the gradient of cam's output, so of its shape and dtype.
inline void check_cam_grad(const at::Tensor& grad, const at::Tensor& activations, const at::Tensor& weights,
                           const CamShape& s) {
  check_same_device(grad, "grad", activations, "activations");
  const at::ScalarType want = compute_dtype(activations, weights);
  TORCH_CHECK_VALUE(grad.scalar_type() == want, "actcam: grad must have the dtype of cam's output (", want, "), got ",
                    grad.scalar_type());
  const std::vector<int64_t> shape =
      s.per_class ? std::vector<int64_t>{s.B, s.C, s.H, s.W} : std::vector<int64_t>{s.B, s.H, s.W};
  TORCH_CHECK_VALUE(grad.sizes() == at::IntArrayRef(shape), "actcam: grad must have the shape of cam's output ",
                    at::IntArrayRef(shape), ", got ", grad.sizes());
}

// cam_from_grads's modes, in the order of cpu::Mode after kWeights (csrc/cpu/kernels.h).
inline const std::vector<std::string>& cam_from_grads_modes() {
  static const std::vector<std::string> modes = {"gradcam", "xgradcam", "hirescam", "gradcam_elementwise",
                                                 "layercam"};
  return modes;
}

// The mode's index in cam_from_grads_modes().
inline int check_mode(const std::string& mode) {
  const auto& modes = cam_from_grads_modes();
  for (size_t i = 0; i < modes.size(); ++i)
    if (mode == modes[i]) return static_cast<int>(i);
  std::string list;
  for (const auto& m : modes) list += (list.empty() ? "'" : ", '") + m + "'";
  TORCH_CHECK_VALUE(false, "actcam: mode must be one of ", list, ", got '", mode, "'");
  return -1;
}

// cam_from_grads: grads [B,K,h,w] (one map per image) or [B,C,K,h,w] (C maps per image), of the
// activations' dtype. The order of the checks is _checks.cam_from_grads's.
inline CamShape check_cam_from_grads(const at::Tensor& activations, const at::Tensor& grads, const std::string& mode,
                                     at::IntArrayRef size) {
  TORCH_CHECK_VALUE(size.size() == 2, "actcam: size must be two integers (H, W), got ", size);
  TORCH_CHECK_VALUE(size[0] > 0 && size[1] > 0, "actcam: size must be positive, got ", size);
  check_mode(mode);
  check_float(activations, "activations");
  check_float(grads, "grads");
  check_rank(activations, "activations", 4, "[B,K,h,w]");
  TORCH_CHECK_VALUE(grads.dim() == 4 || grads.dim() == 5,
                    "actcam: grads must be a 4-D or 5-D tensor [B,K,h,w] or [B,C,K,h,w], got shape ", grads.sizes());
  check_same_device(activations, "activations", grads, "grads");
  CamShape s;
  s.B = activations.size(0);
  s.K = activations.size(1);
  s.h = activations.size(2);
  s.w = activations.size(3);
  TORCH_CHECK_VALUE(s.h > 0 && s.w > 0, "actcam: activations must have a non-empty spatial size, got shape ",
                    activations.sizes());
  TORCH_CHECK_VALUE(grads.scalar_type() == activations.scalar_type(),
                    "actcam: grads must have the dtype of activations (", activations.scalar_type(), "), got ",
                    grads.scalar_type());
  const int64_t d = grads.dim();
  TORCH_CHECK_VALUE(grads.size(0) == s.B && grads.size(d - 3) == s.K && grads.size(d - 2) == s.h &&
                        grads.size(d - 1) == s.w,
                    "actcam: grads must have shape [B,K,h,w] = [", s.B, ", ", s.K, ", ", s.h, ", ", s.w,
                    "] or [B,C,K,h,w] = [", s.B, ", C, ", s.K, ", ", s.h, ", ", s.w, "], got shape ", grads.sizes());
  s.per_class = d == 5;
  s.C = s.per_class ? grads.size(1) : 1;
  s.H = size[0];
  s.W = size[1];
  return s;
}

inline void check_gradcampp(const at::Tensor& activations, const at::Tensor& grads) {
  check_float(activations, "activations");
  check_float(grads, "grads");
  check_rank(activations, "activations", 4, "[B,K,h,w]");
  check_rank(grads, "grads", 4, "[B,K,h,w]");
  check_same_device(activations, "activations", grads, "grads");
  TORCH_CHECK_VALUE(grads.sizes() == activations.sizes(), "actcam: grads must have the shape of activations ",
                    activations.sizes(), ", got ", grads.sizes());
  TORCH_CHECK_VALUE(grads.scalar_type() == activations.scalar_type(),
                    "actcam: grads must have the dtype of activations (", activations.scalar_type(), "), got ",
                    grads.scalar_type());
}

inline void check_overlay(const at::Tensor& maps, const at::Tensor& images, double image_weight) {
  check_float(maps, "maps");
  check_rank(maps, "maps", 3, "[B,H,W]");
  TORCH_CHECK_VALUE(images.scalar_type() == at::kByte, "actcam: images must be a uint8 tensor [B,H,W,3] (RGB), got ",
                    images.scalar_type());
  check_rank(images, "images", 4, "[B,H,W,3]");
  check_same_device(maps, "maps", images, "images");
  TORCH_CHECK_VALUE(images.size(0) == maps.size(0) && images.size(1) == maps.size(1) &&
                        images.size(2) == maps.size(2) && images.size(3) == 3,
                    "actcam: images must have shape [B,H,W,3] = [", maps.size(0), ", ", maps.size(1), ", ",
                    maps.size(2), ", 3] to match maps, got ", images.sizes());
  TORCH_CHECK_VALUE(image_weight >= 0.0 && image_weight <= 1.0, "actcam: image_weight must be in [0, 1], got ",
                    image_weight);
}

}  // namespace actcam

// The float dtypes every op accepts (float32, float16, bfloat16); the kernels accumulate in float32.
#define ACTCAM_DISPATCH_FLOATS(TYPE, NAME, ...)                     \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                    \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)      \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)       \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))

// The CPU kernels' dtypes: those and float64 (which they accumulate in float64).
#define ACTCAM_DISPATCH_FLOATS_AND_DOUBLE(TYPE, NAME, ...)          \
  AT_DISPATCH_SWITCH(TYPE, NAME,                                    \
                     AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)      \
                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)       \
                     AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__)   \
                     AT_DISPATCH_CASE(at::kDouble, __VA_ARGS__))
