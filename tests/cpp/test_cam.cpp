// C++ test of libactcam.so, the LibTorch build of the actcam ops (CMakeLists.txt).
//
// The ops are reached through the dispatcher by schema name, as any LibTorch user would,
// so this also proves that linking libactcam.so runs its TORCH_LIBRARY registrations.
// Expected values are worked out by hand in the comments, except the resize case, which is
// checked against ATen's own bilinear upsampling (the semantics docs/ops.md promises).
// Prints one line per check and exits non-zero when any check fails.
#include <ATen/ATen.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/util/Exception.h>
#include <link.h>

#include <cstdio>
#include <cstring>
#include <functional>
#include <optional>
#include <sstream>
#include <string>
#include <tuple>
#include <vector>

namespace {

int g_failures = 0;

void report(const std::string& name, bool ok, const std::string& detail = "") {
  const bool show = !ok && !detail.empty();
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), show ? ": " : "", show ? detail.c_str() : "");
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

// Runs one check; an exception counts as a failure of that check, not of the whole program.
void check(const std::string& name, const std::function<bool(std::string&)>& body) {
  std::string detail;
  bool ok = false;
  try {
    ok = body(detail);
  } catch (const std::exception& e) {
    detail = std::string("unexpected exception: ") + e.what();
  }
  report(name, ok, detail);
}

std::string describe(const at::Tensor& got, const at::Tensor& want) {
  std::ostringstream s;
  s << "got\n" << got << "\nexpected\n" << want;
  return s.str();
}

bool close(const at::Tensor& got, const at::Tensor& want, std::string& detail, double atol = 1e-6) {
  if (got.sizes() != want.sizes() || got.scalar_type() != want.scalar_type() ||
      !at::allclose(got, want, /*rtol=*/1e-5, atol)) {
    detail = describe(got, want);
    return false;
  }
  return true;
}

bool library_loaded() {
  auto visit = [](dl_phdr_info* info, size_t, void*) -> int {
    return info->dlpi_name != nullptr && std::strstr(info->dlpi_name, "libactcam.so") != nullptr;
  };
  return dl_iterate_phdr(visit, nullptr) != 0;
}

at::Tensor from(std::initializer_list<float> values, at::IntArrayRef shape) {
  return at::tensor(std::vector<float>(values), at::kFloat).reshape(shape);
}

}  // namespace

int main() {
  // Without the library in the process, every check below would fail with "unknown op";
  // this line says why up front.
  report("libactcam.so is loaded", library_loaded(), "test_cam was linked without libactcam.so in DT_NEEDED");

  auto& dispatcher = c10::Dispatcher::singleton();
  using CamFn = at::Tensor(const at::Tensor&, const at::Tensor&, c10::IntArrayRef, bool, bool);
  using GradCamPPFn = at::Tensor(const at::Tensor&, const at::Tensor&);
  using CamBackwardFn = std::tuple<at::Tensor, at::Tensor>(const at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                          c10::IntArrayRef, bool, bool);
  std::optional<c10::TypedOperatorHandle<CamFn>> cam_op;
  std::optional<c10::TypedOperatorHandle<GradCamPPFn>> gradcampp_op;
  std::optional<c10::TypedOperatorHandle<CamBackwardFn>> cam_backward_op;
  try {
    cam_op = dispatcher.findSchemaOrThrow("actcam::cam", "").typed<CamFn>();
    gradcampp_op = dispatcher.findSchemaOrThrow("actcam::gradcampp_weights", "").typed<GradCamPPFn>();
    cam_backward_op = dispatcher.findSchemaOrThrow("actcam::cam_backward", "").typed<CamBackwardFn>();
    report("schemas actcam::cam, actcam::cam_backward and actcam::gradcampp_weights are registered", true);
  } catch (const std::exception& e) {
    report("schemas actcam::cam, actcam::cam_backward and actcam::gradcampp_weights are registered", false, e.what());
    return 1;
  }
  const auto& cam = *cam_op;
  const auto& gradcampp_weights = *gradcampp_op;
  const auto& cam_backward = *cam_backward_op;

  // A0 = [[1,2],[3,4]], A1 = [[4,3],[2,1]], weights [1, -0.5]:
  // A0 - 0.5 A1 = [[-1, 0.5], [2, 3.5]]. Resizing 2x2 to 2x2 is the identity (every tap has
  // weight 1 on its own pixel), so the expected maps below are exact.
  const at::Tensor A = from({1, 2, 3, 4, 4, 3, 2, 1}, {1, 2, 2, 2});
  const at::Tensor w = from({1, -0.5}, {1, 2});
  check("cam raw weighted sum (relu=false, normalize=false)", [&](std::string& d) {
    return close(cam.call(A, w, {2, 2}, false, false), from({-1, 0.5, 2, 3.5}, {1, 2, 2}), d, 0.0);
  });
  check("cam relu (normalize=false)", [&](std::string& d) {
    return close(cam.call(A, w, {2, 2}, true, false), from({0, 0.5, 2, 3.5}, {1, 2, 2}), d, 0.0);
  });
  check("cam relu + min-max: [[0, 1/7], [4/7, 1]]", [&](std::string& d) {
    return close(cam.call(A, w, {2, 2}, true, true), from({0, 1.f / 7, 4.f / 7, 1}, {1, 2, 2}), d);
  });
  check("cam min-max without relu: (m + 1) / 4.5", [&](std::string& d) {
    return close(cam.call(A, w, {2, 2}, false, true), from({0, 1.f / 3, 2.f / 3, 1}, {1, 2, 2}), d);
  });
  // Per-class weights [B,C,K]: class 1 with weights [0, 1] is A1 = [[4,3],[2,1]] -> (A1 - 1) / 3.
  check("cam per-class weights [B,C,K] -> [B,C,H,W]", [&](std::string& d) {
    const at::Tensor wc = from({1, -0.5, 0, 1}, {1, 2, 2});
    const at::Tensor want = from({0, 1.f / 7, 4.f / 7, 1, 1, 2.f / 3, 1.f / 3, 0}, {1, 2, 2, 2});
    return close(cam.call(A, wc, {2, 2}, true, true), want, d);
  });

  // Resize 5x7 -> 11x13 checked against ATen: channel sum, ReLU, upsample_bilinear2d with
  // align_corners=false, per-map min-max.
  check("cam upsample 5x7 -> 11x13 matches at::upsample_bilinear2d + min-max", [&](std::string& d) {
    at::manual_seed(0);
    const at::Tensor acts = at::randn({2, 3, 5, 7});
    const at::Tensor wts = at::randn({2, 3});
    at::Tensor m = (acts * wts.unsqueeze(-1).unsqueeze(-1)).sum(1, /*keepdim=*/true).relu();
    m = at::upsample_bilinear2d(m, {11, 13}, /*align_corners=*/false);
    const at::Tensor lo = m.amin({-2, -1}, true), hi = m.amax({-2, -1}, true);
    const at::Tensor want = ((m - lo) / (hi - lo)).squeeze(1);
    return close(cam.call(acts, wts, {11, 13}, true, true), want, d, 1e-5);
  });

  // A constant map has no spread to normalise by: docs/ops.md says zeros, never 0/0 = NaN.
  check("cam constant map -> zeros", [&](std::string& d) {
    const at::Tensor ones = at::ones({1, 2, 3, 3});
    const at::Tensor got = cam.call(ones, from({1, 1}, {1, 2}), {4, 5}, true, true);
    return close(got, at::zeros({1, 4, 5}), d, 0.0);
  });
  check("cam all-negative map (zero after ReLU) -> zeros", [&](std::string& d) {
    const at::Tensor ones = at::ones({1, 2, 3, 3});
    const at::Tensor got = cam.call(ones, from({-1, -1}, {1, 2}), {4, 5}, true, true);
    return close(got, at::zeros({1, 4, 5}), d, 0.0);
  });

  // float64 in, float64 out (the CPU kernels accumulate in double for it).
  check("cam float64 -> float64, as the double-precision chain", [&](std::string& d) {
    const at::Tensor A64 = A.to(at::kDouble);
    const at::Tensor want = at::tensor(std::vector<double>{0, 1.0 / 3, 2.0 / 3, 1}, at::kDouble).reshape({1, 2, 2});
    return close(cam.call(A64, w.to(at::kDouble), {2, 2}, false, true), want, d, 1e-15);
  });

  // cam_backward without ReLU or normalisation, at the identity resize: the map is
  // sum_k w_k A_k, so grad_A[k] = w_k * g and grad_w[k] = sum_p A_k[p] g[p]. With
  // g = [[1,2],[3,4]]: grad_A = [g, -0.5 g]; grad_w = [1+4+9+16, 4+6+6+4] = [30, 20].
  check("cam_backward (relu=false, normalize=false) by hand", [&](std::string& d) {
    const at::Tensor g = from({1, 2, 3, 4}, {1, 2, 2});
    const auto [grad_a, grad_w] = cam_backward.call(g, A, w, {2, 2}, false, false);
    return close(grad_a, from({1, 2, 3, 4, -0.5, -1, -1.5, -2}, {1, 2, 2, 2}), d, 0.0) &&
           close(grad_w, from({30, 20}, {1, 2}), d, 0.0);
  });
  // With normalisation, a constant map passes no gradient back.
  check("cam_backward of a constant map is zero", [&](std::string& d) {
    const at::Tensor ones = at::ones({1, 2, 3, 3});
    const auto [grad_a, grad_w] = cam_backward.call(at::ones({1, 4, 5}), ones, from({1, 1}, {1, 2}), {4, 5}, true, true);
    return close(grad_a, at::zeros({1, 2, 3, 3}), d, 0.0) && close(grad_w, at::zeros({1, 2}), d, 0.0);
  });

  // Grad-CAM++ Eq. 19: alpha = g^2 / (2 g^2 + S g^3), S = sum of the channel's activations;
  // w = sum alpha * relu(g).
  //   channel 0: A = [1, 2, 0] (S = 3), g = [1, -1, 0]
  //     g = 1:  1 / (2 + 3) = 1/5, times relu(1) = 1   -> 0.2
  //     g = -1: relu(-1) = 0                            -> 0
  //     g = 0:  denominator 0, so alpha = 0 (not NaN)   -> 0        w0 = 0.2
  //   channel 1: A = [0.5, 0.5, 1] (S = 2), g = [2, 0.5, 0]
  //     g = 2:   4 / (8 + 16) = 1/6, times 2            -> 1/3
  //     g = 0.5: 0.25 / (0.5 + 0.25) = 1/3, times 0.5   -> 1/6
  //     g = 0:                                          -> 0        w1 = 0.5
  check("gradcampp_weights Eq. 19 hand case [0.2, 0.5]", [&](std::string& d) {
    const at::Tensor acts = from({1, 2, 0, 0.5, 0.5, 1}, {1, 2, 1, 3});
    const at::Tensor grads = from({1, -1, 0, 2, 0.5, 0}, {1, 2, 1, 3});
    return close(gradcampp_weights.call(acts, grads), from({0.2f, 0.5f}, {1, 2}), d);
  });

  // Bad input must raise a c10::Error naming the argument, never crash or return garbage.
  check("cam weights with wrong K throws c10::Error naming weights", [&](std::string& d) {
    try {
      cam.call(A, at::ones({1, 3}), {2, 2}, true, true);
    } catch (const c10::Error& e) {
      const std::string msg = e.what_without_backtrace();
      if (msg.find("weights") != std::string::npos) return true;
      d = "message does not name weights: " + msg;
      return false;
    }
    d = "no exception";
    return false;
  });

  std::printf("%s: %d check(s) failed\n", g_failures == 0 ? "OK" : "FAILED", g_failures);
  return g_failures == 0 ? 0 : 1;
}
