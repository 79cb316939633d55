// mini_vision._C: an extension built against libminitorch, like torchvision's _C against libtorch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "minitorch.h"

static PyObject* boxes(PyObject*, PyObject* args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return nullptr;
  auto list = minitorch::ListType::get("boxes", static_cast<int>(n));  // crosses into libminitorch
  return PyFloat_FromDouble(minitorch::sum(minitorch::ones(list->size)));
}

static PyMethodDef methods[] = {{"boxes", boxes, METH_VARARGS, "calls across the library boundary"},
                                {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, "mini_vision._C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C() {
  minitorch::register_op("mini_vision::nms");  // like torchvision registering torchvision::nms
  return PyModule_Create(&module);
}
