/* mini_vision._io: a second, plain-C extension (like torchvision.image beside torchvision._C). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject* decode(PyObject* self, PyObject* args) { return PyLong_FromLong(0); }

static PyMethodDef methods[] = {{"decode", decode, METH_VARARGS, "placeholder decoder"}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "mini_vision._io", NULL, -1, methods};

PyMODINIT_FUNC PyInit__io(void) { return PyModule_Create(&module); }
