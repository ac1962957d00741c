/* CPython 3.11-3.15 differences, in one place. */
#ifndef FL_COMPAT_H
#define FL_COMPAT_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#if PY_VERSION_HEX < 0x030B0000
#error "fastloop needs CPython 3.11 or newer (3.10 reached its end of life)"
#endif

#if PY_VERSION_HEX < 0x030D0000
/* 3.13 added PyObject_GetOptionalAttr; before it, emulate with the 3.10 API. */
static inline int
fl_get_optional_attr(PyObject *obj, PyObject *name, PyObject **result)
{
    *result = PyObject_GetAttr(obj, name);
    if (*result != NULL) {
        return 1;
    }
    if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        return 0;
    }
    return -1;
}
#else
#define fl_get_optional_attr PyObject_GetOptionalAttr
#endif

#if PY_VERSION_HEX < 0x030C0000
/* 3.12 added PyErr_GetRaisedException / PyErr_SetRaisedException. */
static inline PyObject *
fl_err_get_raised(void)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    if (type == NULL) {
        return NULL;
    }
    PyErr_NormalizeException(&type, &value, &tb);
    if (tb != NULL) {
        PyException_SetTraceback(value, tb);
    }
    Py_DECREF(type);
    Py_XDECREF(tb);
    return value;
}

static inline void
fl_err_set_raised(PyObject *exc)
{
    PyErr_Restore(Py_NewRef((PyObject *)Py_TYPE(exc)), exc,
                  PyException_GetTraceback(exc));
}
#else
#define fl_err_get_raised PyErr_GetRaisedException
#define fl_err_set_raised PyErr_SetRaisedException
#endif

/* asyncio's C Future wraps StopIteration given to set_exception() in a
   RuntimeError from 3.12.2 on (it raised TypeError before): a runtime
   check, as a build for 3.12.1 also runs on later 3.12 releases. */
static inline int
fl_future_wraps_stopiteration(void)
{
    return Py_Version >= 0x030C0200;
}

/* transport.write()'s TypeError names the accepted types this way. */
#if PY_VERSION_HEX >= 0x030E0000
#define FL_WRITE_TYPES_WORDING "bytes, bytearray, or memoryview object"
#else
#define FL_WRITE_TYPES_WORDING "bytes-like object"
#endif

#endif /* FL_COMPAT_H */
