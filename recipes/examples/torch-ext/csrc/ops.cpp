// One op registered into torch's dispatcher, as torchvision (torchvision::nms) and vLLM (_C ops)
// register theirs: callable as torch.ops.torch_ext.scale_add after `import torch_ext`.
#include <ATen/cpu/Utils.h>
#include <Python.h>
#include <torch/library.h>

namespace {

at::Tensor scale_add(const at::Tensor& x, const at::Tensor& y, double alpha) {
  TORCH_CHECK(x.sizes() == y.sizes(), "scale_add: x and y differ in shape");
  return x.add(y, alpha);
}

// Whether this CPU has SVE: what an aarch64 kernel would dispatch on (torch 2.7 no longer exports it)
bool has_sve() { return at::cpu::is_arm_sve_supported(); }

}  // namespace

TORCH_LIBRARY(torch_ext, m) {
  m.def("scale_add(Tensor x, Tensor y, float alpha) -> Tensor");
  m.def("has_sve() -> bool", &has_sve);
}

TORCH_LIBRARY_IMPL(torch_ext, CPU, m) { m.impl("scale_add", &scale_add); }

// `import torch_ext._C` loads the library (and so registers the op); the module itself is empty,
// as vLLM's REGISTER_EXTENSION makes it
extern "C" PyObject* PyInit__C(void) {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, 0, nullptr};
  return PyModule_Create(&module);
}
