// The one place where the actcam op schemas live (DESIGN.md, "Native ops").
// Kernels register per dispatch key in cpu/ and cuda/; the fake kernels for tracing are in
// actcam_ext/ops.py.
#include <torch/library.h>

TORCH_LIBRARY(actcam, m) {
  m.def("cam(Tensor activations, Tensor weights, int[2] size, bool relu=True, bool normalize=True) -> Tensor");
  m.def("gradcampp_weights(Tensor activations, Tensor grads) -> Tensor");
  m.def("overlay(Tensor maps, Tensor images, float image_weight=0.5) -> Tensor");
}

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
