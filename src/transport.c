/* What the transports and the listener share (see transport.h). */
#include "transport.h"

PyObject *fl_str_close, *fl_str_fileno;

static PyObject *helpers_module;    /* fastloop._network, imported on first use */

int
fl_transport_error_is_fatal(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit)
        || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

PyObject *
fl_transport_take_nonfatal(void)
{
    if (fl_transport_error_is_fatal()) {
        return NULL;
    }
    return fl_err_get_raised();
}

static int
reraise_entry(FlLoop *loop, fl_ready_item *item)
{
    fl_err_set_raised(Py_NewRef(item->arg));
    return -1;
}

void
fl_transport_stash_fatal(FlLoop *loop)
{
    PyObject *exc = fl_err_get_raised();
    if (exc == NULL) {
        return;
    }
    if (fl_ready_push(&loop->ready, reraise_entry, exc) < 0) {
        PyErr_WriteUnraisable(exc);
    }
    Py_DECREF(exc);
}

static PyObject *
helper(const char *name)
{
    if (helpers_module == NULL) {
        helpers_module = PyImport_ImportModule("fastloop._network");
        if (helpers_module == NULL) {
            return NULL;
        }
    }
    return PyObject_GetAttrString(helpers_module, name);
}

int
fl_transport_call_helper(const char *name, PyObject *args)
{
    if (args == NULL) {
        return -1;
    }
    PyObject *fn = helper(name);
    PyObject *r = fn ? PyObject_Call(fn, args, NULL) : NULL;
    Py_XDECREF(fn);
    Py_DECREF(args);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyObject *
fl_transport_import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *v = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return v;
}

int
fl_transport_module_init(void)
{
    static const struct { PyObject **slot; const char *s; } names[] = {
        {&fl_str_close, "close"},
        {&fl_str_fileno, "fileno"},
    };
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (*names[i].slot == NULL
                && (*names[i].slot = PyUnicode_InternFromString(names[i].s)) == NULL) {
            return -1;
        }
    }
    return 0;
}
