/* Error helpers every floor uses: what must stop the loop, one way out
   of the loop for it (fl_err_reraise_entry), asyncio's logger, and small
   call helpers. */
#include "core/errors.h"

int
fl_err_is_fatal(void)
{
    return PyErr_ExceptionMatches(PyExc_SystemExit)
        || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
}

PyObject *
fl_err_take_nonfatal(void)
{
    if (fl_err_is_fatal()) {
        return NULL;
    }
    return fl_err_get_raised();
}

int
fl_err_reraise_entry(FlLoop *loop, fl_ready_item *item)
{
    fl_err_set_raised(Py_NewRef(item->arg));
    return -1;
}

void
fl_err_stash_fatal(FlLoop *loop)
{
    PyObject *exc = fl_err_get_raised();
    if (exc == NULL) {
        return;
    }
    if (fl_ready_push(&loop->ready, fl_err_reraise_entry, exc) < 0) {
        PyErr_WriteUnraisable(exc);
    }
    Py_DECREF(exc);
}

int
fl_log(const char *level, PyObject *args, PyObject *exc_info)
{
    PyObject *mod = PyImport_ImportModule("asyncio.log");
    PyObject *logger = mod ? PyObject_GetAttrString(mod, "logger") : NULL;
    Py_XDECREF(mod);
    if (logger == NULL) {
        return -1;
    }
    PyObject *meth = PyObject_GetAttrString(logger, level);
    PyObject *kw = exc_info ? Py_BuildValue("{s:O}", "exc_info", exc_info) : NULL;
    PyObject *r = meth && (kw || !exc_info) ? PyObject_Call(meth, args, kw) : NULL;
    Py_XDECREF(meth);
    Py_XDECREF(kw);
    Py_DECREF(logger);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
fl_intern(const fl_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (*names[i].slot == NULL
                && (*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL) {
            return -1;
        }
    }
    return 0;
}

PyObject *
fl_import_attr(const char *module, const char *name)
{
    PyObject *m = PyImport_ImportModule(module);
    if (m == NULL) {
        return NULL;
    }
    PyObject *v = PyObject_GetAttrString(m, name);
    Py_DECREF(m);
    return v;
}

