/* The iterator behind `await future`: yields the future while it is pending
   (that is how a task learns what to wait for), then returns its result. */
#include "futures/future.h"

typedef struct {
    PyObject_HEAD
    PyObject *future;           /* NULL once exhausted */
} FlFutureIter;

PyObject *
fl_future_iter_new(fl_state *st, PyObject *future)
{
    FlFutureIter *it = PyObject_GC_New(FlFutureIter, st->future_iter_type);
    if (it == NULL) {
        return NULL;
    }
    it->future = Py_NewRef(future);
    PyObject_GC_Track(it);
    return (PyObject *)it;
}

static fl_state *
iter_state(PyObject *self)
{
    return fl_state_from_type(Py_TYPE(self));
}

/* One step: PYGEN_NEXT with the future while it is pending, PYGEN_RETURN
   with its result once done, PYGEN_ERROR with its exception. */
static PySendResult
iter_step(FlFutureIter *it, PyObject **result)
{
    PyObject *fut = it->future;
    *result = NULL;
    if (fut == NULL) {
        *result = Py_NewRef(Py_None);
        return PYGEN_RETURN;
    }
    FlFutureFields *f = FL_FUT(fut);
    if (f->loop == NULL) {
        /* Cleared, or its re-initialization failed: a task must not be
           handed a future without a loop. */
        PyErr_SetString(PyExc_RuntimeError, "Future object is not initialized.");
        return PYGEN_ERROR;
    }
    if (f->state == FL_PENDING) {
        if (!f->blocking) {
            f->blocking = 1;
            *result = Py_NewRef(fut);
            return PYGEN_NEXT;
        }
        PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
        return PYGEN_ERROR;
    }
    it->future = NULL;
    fl_state *st = iter_state((PyObject *)it);
    PyObject *res = st ? fl_future_result(st, fut) : NULL;
    Py_DECREF(fut);
    if (res == NULL) {
        return PYGEN_ERROR;
    }
    *result = res;
    return PYGEN_RETURN;
}

static PySendResult
iter_am_send(PyObject *self, PyObject *arg, PyObject **result)
{
    return iter_step((FlFutureIter *)self, result);
}

/* tp_iternext's way of returning a value: StopIteration(value). */
static PyObject *
step_as_iternext(FlFutureIter *it)
{
    PyObject *res;
    PySendResult r = iter_step(it, &res);
    if (r == PYGEN_NEXT) {
        return res;
    }
    if (r == PYGEN_RETURN) {
        if (res != Py_None) {
            PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, res);
            if (stop != NULL) {
                PyErr_SetObject(PyExc_StopIteration, stop);
                Py_DECREF(stop);
            }
        }
        Py_DECREF(res);
    }
    return NULL;
}

static PyObject *
iter_next(PyObject *self)
{
    return step_as_iternext((FlFutureIter *)self);
}

static PyObject *
iter_send(PyObject *self, PyObject *value)
{
    if (value != Py_None) {
        PyErr_Format(PyExc_TypeError,
                     "can't send non-None value to a FutureIter");
        return NULL;
    }
    PyObject *r = step_as_iternext((FlFutureIter *)self);
    if (r == NULL && !PyErr_Occurred()) {
        PyErr_SetNone(PyExc_StopIteration);
    }
    return r;
}

static PyObject *
iter_throw(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_SetString(PyExc_TypeError, "throw expected 1 to 3 arguments");
        return NULL;
    }
#if PY_VERSION_HEX >= 0x030C0000
    if (nargs > 1 && PyErr_WarnEx(PyExc_DeprecationWarning,
                                  "the (type, exc, tb) signature of throw() is "
                                  "deprecated, use the single-arg signature instead.",
                                  1) < 0) {
        return NULL;
    }
#endif
    PyObject *type = args[0];
    PyObject *value = nargs > 1 ? args[1] : Py_None;
    PyObject *tb = nargs > 2 ? args[2] : Py_None;
    if (tb != Py_None && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError, "throw() third argument must be a traceback");
        return NULL;
    }
    PyObject *exc;
    if (PyExceptionClass_Check(type)) {
        exc = value == Py_None ? PyObject_CallNoArgs(type)
              : PyExceptionInstance_Check(value) ? Py_NewRef(value)
              : PyObject_CallOneArg(type, value);
        if (exc == NULL) {
            return NULL;
        }
    }
    else if (PyExceptionInstance_Check(type)) {
        if (value != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            return NULL;
        }
        exc = Py_NewRef(type);
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes deriving BaseException, not %s",
                     Py_TYPE(type)->tp_name);
        return NULL;
    }
    if (tb != Py_None) {
        PyException_SetTraceback(exc, tb);
    }
    Py_CLEAR(((FlFutureIter *)self)->future);
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

static PyObject *
iter_close(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(((FlFutureIter *)self)->future);
    Py_RETURN_NONE;
}

static int
iter_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(((FlFutureIter *)self)->future);
    return 0;
}

static int
iter_clear(PyObject *self)
{
    Py_CLEAR(((FlFutureIter *)self)->future);
    return 0;
}

static void
iter_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    iter_clear(self);
    PyObject_GC_Del(self);
    Py_DECREF(tp);
}

static PyMethodDef iter_methods[] = {
    {"send", iter_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))iter_throw, METH_FASTCALL, NULL},
    {"close", iter_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyType_Slot iter_slots[] = {
    {Py_tp_dealloc, iter_dealloc},
    {Py_tp_traverse, iter_traverse},
    {Py_tp_clear, iter_clear},
    {Py_tp_iter, PyObject_SelfIter},
    {Py_tp_iternext, iter_next},
    {Py_am_send, iter_am_send},
    {Py_tp_methods, iter_methods},
    {0, NULL},
};

PyType_Spec fl_future_iter_spec = {
    .name = "fastloop.FutureIter",
    .basicsize = sizeof(FlFutureIter),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = iter_slots,
};
