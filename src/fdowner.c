/* The fd -> transport map (see fdowner.h). */
#include "fdowner.h"
#include "loop.h"

static PyObject *str_transports;
static PyObject *str_is_closing;

/* The loop's map; NULL without an exception when the loop has none (a bare
   LoopCore, or a loop being torn down). */
static PyObject *
get_map(struct FlLoop *loop)
{
    if (str_transports == NULL) {
        str_transports = PyUnicode_InternFromString("_transports");
        if (str_transports == NULL) {
            return NULL;
        }
    }
    PyObject *map = PyObject_GetAttr((PyObject *)loop, str_transports);
    if (map == NULL) {
        if (PyErr_ExceptionMatches(PyExc_AttributeError)) {
            PyErr_Clear();
        }
        return NULL;
    }
    if (!PyDict_Check(map)) {
        Py_DECREF(map);
        return NULL;
    }
    return map;
}

int
fl_fdowner_add(struct FlLoop *loop, int fd, PyObject *transport)
{
    PyObject *map = get_map(loop);
    if (map == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    PyObject *key = PyLong_FromLong(fd);
    int r = key ? PyDict_SetItem(map, key, transport) : -1;
    Py_XDECREF(key);
    Py_DECREF(map);
    return r;
}

void
fl_fdowner_discard(struct FlLoop *loop, int fd, PyObject *transport)
{
    if (fd < 0 || loop == NULL) {
        return;
    }
    PyObject *exc = fl_err_get_raised();
    PyObject *map = get_map(loop);
    if (map != NULL) {
        PyObject *key = PyLong_FromLong(fd);
        PyObject *cur = key ? PyDict_GetItemWithError(map, key) : NULL;
        if (cur == transport && PyDict_DelItem(map, key) < 0) {
            PyErr_WriteUnraisable(transport);
        }
        Py_XDECREF(key);
        Py_DECREF(map);
    }
    if (PyErr_Occurred()) {
        PyErr_WriteUnraisable(transport);
    }
    if (exc != NULL) {
        fl_err_set_raised(exc);
    }
}

int
fl_fdowner_check(struct FlLoop *loop, int fd, PyObject *fileobj)
{
    PyObject *map = get_map(loop);
    if (map == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    if (PyDict_GET_SIZE(map) == 0) {
        Py_DECREF(map);
        return 0;
    }
    int rc = 0;
    PyObject *key = PyLong_FromLong(fd);
    PyObject *transport = key ? PyDict_GetItemWithError(map, key) : NULL;
    Py_XDECREF(key);
    if (transport == NULL) {
        rc = PyErr_Occurred() ? -1 : 0;
        goto done;
    }
    Py_INCREF(transport);
    if (str_is_closing == NULL
            && (str_is_closing = PyUnicode_InternFromString("is_closing")) == NULL) {
        Py_DECREF(transport);
        rc = -1;
        goto done;
    }
    PyObject *closing = PyObject_CallMethodNoArgs(transport, str_is_closing);
    int truth = closing ? PyObject_IsTrue(closing) : -1;
    Py_XDECREF(closing);
    if (truth < 0) {
        rc = -1;
    }
    else if (!truth) {
        if (fileobj != NULL) {
            PyErr_Format(PyExc_RuntimeError,
                         "File descriptor %R is used by transport %R",
                         fileobj, transport);
        }
        else {
            PyErr_Format(PyExc_RuntimeError,
                         "File descriptor %d is used by transport %R",
                         fd, transport);
        }
        rc = -1;
    }
    Py_DECREF(transport);
done:
    Py_DECREF(map);
    return rc;
}
