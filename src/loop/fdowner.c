/* The fd -> transport map (see fdowner.h). */
#include "loop/fdowner.h"
#include "core/loopcore.h"
#include "loop/io.h"

static PyObject *str_transports;
static PyObject *str_is_closing;
static PyObject *str_sock_fd;
static PyObject *str_sock;

static int
intern_once(PyObject **slot, const char *s)
{
    if (*slot == NULL && (*slot = PyUnicode_InternFromString(s)) == NULL) {
        return -1;
    }
    return 0;
}

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
    if (fl_io_drop_stale(loop, fd, NULL) < 0) {
        return -1;
    }
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

/* Does `owner` still hold fd? An entry stays in the map when a transport
   lets go of its fd without closing (`transport._pipe = None`, which
   asyncio code does, issue #10, C10), and the number may then be reused.
   asyncio's transports and fastloop's both tell: `_sock_fd` (the number
   they watch, -1 once they let go) and `_sock` (None once released).
   1 yes (or cannot tell), 0 no, -1 error. */
static int
owner_holds_fd(PyObject *owner, int fd)
{
    if (intern_once(&str_sock_fd, "_sock_fd") < 0
            || intern_once(&str_sock, "_sock") < 0) {
        return -1;
    }
    PyObject *v;
    int r = fl_get_optional_attr(owner, str_sock_fd, &v);
    if (r <= 0) {
        return r < 0 ? -1 : 1;
    }
    int holds = 1;
    if (PyLong_Check(v)) {
        long n = PyLong_AsLong(v);
        if (n == -1 && PyErr_Occurred()) {
            PyErr_Clear();
        }
        else {
            holds = n == fd;
        }
    }
    Py_DECREF(v);
    if (!holds) {
        return 0;
    }
    r = fl_get_optional_attr(owner, str_sock, &v);
    if (r <= 0) {
        return r < 0 ? -1 : 1;
    }
    holds = v != Py_None;
    Py_DECREF(v);
    return holds;
}

int
fl_fdowner_check(struct FlLoop *loop, int fd, PyObject *fileobj)
{
    if (fl_io_drop_stale(loop, fd, fileobj) < 0) {
        return -1;
    }
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
    int holds = owner_holds_fd(transport, fd);
    if (holds == 0) {
        /* A stale entry: forget it (unless Python code replaced it). */
        key = PyLong_FromLong(fd);
        PyObject *cur = key ? PyDict_GetItemWithError(map, key) : NULL;
        if (cur == transport && PyDict_DelItem(map, key) < 0) {
            rc = -1;
        }
        else if (cur == NULL && PyErr_Occurred()) {
            rc = -1;
        }
        Py_XDECREF(key);
        if (key == NULL) {
            rc = -1;
        }
        Py_DECREF(transport);
        goto done;
    }
    if (holds < 0 || intern_once(&str_is_closing, "is_closing") < 0) {
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
