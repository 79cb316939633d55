// mini_torch._C: the Python face of libminitorch.
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "minitorch.h"

static PyObject* ones_sum(PyObject*, PyObject* args) {
  long n;
  if (!PyArg_ParseTuple(args, "l", &n)) return nullptr;
  return PyFloat_FromDouble(minitorch::sum(minitorch::ones(n)));
}

static PyObject* has_op(PyObject*, PyObject* args) {
  const char* name;
  if (!PyArg_ParseTuple(args, "s", &name)) return nullptr;
  return PyBool_FromLong(minitorch::has_op(name));
}

static PyObject* version(PyObject*, PyObject*) { return PyUnicode_FromString(minitorch::version().c_str()); }

static PyMethodDef methods[] = {
    {"ones_sum", ones_sum, METH_VARARGS, "sum(ones(n)) computed in libminitorch"},
    {"has_op", has_op, METH_VARARGS, "whether an extension registered the operator"},
    {"version", version, METH_NOARGS, "libminitorch's version string"},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "mini_torch._C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C() { return PyModule_Create(&module); }
