// mini_cuda._C: a vLLM-like extension: host code linking libminitorch, device code in a fatbin.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "minitorch.h"

extern "C" int mini_cuda_add_one(int n, double* out, const char** message);

static PyObject* add_one(PyObject*, PyObject* args) {
  int n;
  if (!PyArg_ParseTuple(args, "i", &n)) return nullptr;
  double out = 0;
  const char* message = "";
  int err = mini_cuda_add_one(n, &out, &message);
  if (err != 0) return PyErr_Format(PyExc_RuntimeError, "CUDA error: %s", message);
  return PyFloat_FromDouble(out);
}

static PyObject* torch_version(PyObject*, PyObject*) {
  return PyUnicode_FromString(minitorch::version().c_str());
}

static PyMethodDef methods[] = {
    {"add_one", add_one, METH_VARARGS, "runs the kernel on n zeros and returns the sum"},
    {"torch_version", torch_version, METH_NOARGS, "the libminitorch this extension runs against"},
    {nullptr, nullptr, 0, nullptr}};
static PyModuleDef module = {PyModuleDef_HEAD_INIT, "mini_cuda._C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
