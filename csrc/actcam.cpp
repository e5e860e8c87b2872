// The one place where the actcam op schemas live (docs/ops.md has their contracts).
// Kernels register per dispatch key in cpu/ and cuda/; the fake kernels for tracing and the
// autograd formulas are in actcam_ext/ops/__init__.py.
#include <torch/library.h>

TORCH_LIBRARY(actcam, m) {
  m.def("cam(Tensor activations, Tensor weights, int[2] size, bool relu=True, bool normalize=True) -> Tensor");
  // cam's vector-Jacobian product: (grad_activations, grad_weights) for the gradient of its output.
  m.def("cam_backward(Tensor grad, Tensor activations, Tensor weights, int[2] size, bool relu, bool normalize) -> "
        "(Tensor, Tensor)");
  // Class activation maps made straight from gradients: the channel weights (or per-pixel
  // products) of `mode` fused with cam's weighted sum, ReLU, resize and normalisation.
  m.def("cam_from_grads(Tensor activations, Tensor grads, str mode, int[2] size, bool relu=True, "
        "bool normalize=True) -> Tensor");
  m.def("gradcampp_weights(Tensor activations, Tensor grads) -> Tensor");
  m.def("overlay(Tensor maps, Tensor images, float image_weight=0.5) -> Tensor");
  // The CPU kernels' live capability ("default", "avx2" or "avx512"; csrc/cpu/dispatch.cpp).
  m.def("cpu_capability() -> str");
  // Tests only: switch the CPU kernels to another capability the CPU supports; returns it.
  m.def("_set_cpu_capability(str name) -> str");
}

// overlay returns uint8 pictures: nothing to differentiate. Autograd falls through to the
// kernel, so maps that require grad are accepted and the output does not require grad.
TORCH_LIBRARY_IMPL(actcam, Autograd, m) { m.impl("overlay", torch::CppFunction::makeFallthrough()); }

#ifdef ACTCAM_PYTHON_MODULE
// actcam_ext._C is an empty Python module: importing it loads this library, whose static
// initialisers register the ops. No functions are exported through pybind11, because
// torch.compile cannot trace pybind calls while it traces torch.ops.actcam.* (the pattern
// of pytorch/extension-cpp). The LibTorch build (CMakeLists.txt) leaves this out.
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
#endif
