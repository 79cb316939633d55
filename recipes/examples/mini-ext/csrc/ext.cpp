// <package>._C: an extension built against libminitorch, registering an operator named after the
// package (EXT_NAME, set by setup.py), as torchaudio registers torchaudio:: ops into torch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "minitorch.h"

static PyObject* total(PyObject*, PyObject* args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return nullptr;
  auto list = minitorch::ListType::get(EXT_NAME, static_cast<int>(n));  // crosses into libminitorch
  return PyFloat_FromDouble(minitorch::sum(minitorch::ones(list->size)));
}

static PyMethodDef methods[] = {{"total", total, METH_VARARGS, "calls across the library boundary"},
                                {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, EXT_NAME "._C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C() {
  minitorch::register_op(EXT_NAME "::op");
  return PyModule_Create(&module);
}
