// Loads an exported CAM package (.pt2, written by actcam_ext.export.pt2) with AOTInductor's C++
// runner and checks its outputs against the ones Python computed eagerly.
//
//   test_pt2 PACKAGE.pt2 EXPECTED.pt
//
// EXPECTED.pt is a torch.save'd dict {"x": input, "logits": model logits, "maps": eager
// actcam_ext.CAM maps} (tests/cpp/make_pt2.py writes one). The package calls actcam::cam
// through the dispatcher, so this program is linked with libactcam.so (CMakeLists.txt),
// which registers the op; nothing of Python is involved. Prints one line per check and exits
// non-zero when any check fails.
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>
#include <torch/csrc/jit/serialization/pickle.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

namespace {

int g_failures = 0;

void report(const std::string& name, bool ok, const std::string& detail = "") {
  const bool show = !ok && !detail.empty();
  std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", name.c_str(), show ? ": " : "", show ? detail.c_str() : "");
  std::fflush(stdout);
  if (!ok) ++g_failures;
}

c10::Dict<c10::IValue, c10::IValue> load_expected(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot open " + path);
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  return torch::jit::pickle_load(bytes).toGenericDict();
}

// Same shape and dtype, and |got - want| <= atol everywhere (NaN only where want is NaN).
void compare(const std::string& name, const at::Tensor& got, const at::Tensor& want, double atol) {
  std::ostringstream why;
  bool ok = got.sizes() == want.sizes() && got.scalar_type() == want.scalar_type();
  if (!ok) {
    why << "got " << got.sizes() << " " << got.scalar_type() << ", expected " << want.sizes() << " "
        << want.scalar_type();
  } else {
    ok = at::allclose(got, want, /*rtol=*/0.0, atol, /*equal_nan=*/true);
    if (!ok) why << "max |difference| " << (got - want).abs().max().item<double>() << " > " << atol;
  }
  report(name, ok, why.str());
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: %s PACKAGE.pt2 EXPECTED.pt\n", argv[0]);
    return 2;
  }
  const auto schema = c10::Dispatcher::singleton().findSchema({"actcam::cam", ""});
  report("actcam::cam is registered (libactcam.so linked)", schema.has_value());
  try {
    const auto expected = load_expected(argv[2]);
    const at::Tensor x = expected.at("x").toTensor();
    torch::inductor::AOTIModelPackageLoader loader(argv[1]);
    const std::vector<at::Tensor> out = loader.run({x});
    report("the package returns (logits, maps)", out.size() == 2);
    if (out.size() == 2) {
      // The maps go through the same op on activations that AOTInductor's kernels computed
      // instead of eager ATen's: equal up to float rounding.
      compare("logits equal the eager model's", out[0], expected.at("logits").toTensor(), 1e-4);
      compare("maps equal the eager actcam_ext.CAM maps", out[1], expected.at("maps").toTensor(), 1e-5);
    }
  } catch (const std::exception& e) {
    report("load and run the package", false, e.what());
  }
  std::printf("%s: %d check(s) failed\n", g_failures == 0 ? "OK" : "FAILED", g_failures);
  return g_failures == 0 ? 0 : 1;
}
