#include "handle.h"
#include "loop.h"
#include <structmember.h>

FlHandle *
fl_handle_new(FlLoop *loop, PyTypeObject *type, PyObject *callback,
              PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    FlHandle *h = PyObject_GC_New(FlHandle, type);
    if (h == NULL) {
        return NULL;
    }
    h->loop = (FlLoop *)Py_NewRef(loop);
    h->callback = Py_NewRef(callback);
    h->args = NULL;
    h->context = NULL;
    h->source_traceback = NULL;
    h->repr = NULL;
    h->weakreflist = NULL;
    h->cancelled = 0;
    if (type == loop->state->timer_handle_type) {
        FlTimerHandle *t = (FlTimerHandle *)h;
        t->when = 0.0;
        t->seq = 0;
        t->scheduled = 0;
    }
    if (nargs > 0) {
        h->args = PyTuple_New(nargs);
        if (h->args == NULL) {
            goto error;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(h->args, i, Py_NewRef(args[i]));
        }
    }
    if (context == NULL || context == Py_None) {
        h->context = PyContext_CopyCurrent();
        if (h->context == NULL) {
            goto error;
        }
    }
    else {
        h->context = Py_NewRef(context);
    }
    if (loop->debug && loop->state->helper_extract_stack) {
        h->source_traceback = PyObject_CallNoArgs(loop->state->helper_extract_stack);
        if (h->source_traceback == NULL) {
            goto error;
        }
    }
    PyObject_GC_Track(h);
    return h;

error:
    PyObject_GC_Track(h);
    Py_DECREF(h);
    return NULL;
}

static PyObject *
call_context_run(PyObject *context, PyObject *callback, PyObject *const *argv,
                 Py_ssize_t nargs)
{
    PyObject *run = PyObject_GetAttrString(context, "run");
    if (run == NULL) {
        return NULL;
    }
    PyObject *call_args = PyTuple_New(nargs + 1);
    if (call_args == NULL) {
        Py_DECREF(run);
        return NULL;
    }
    PyTuple_SET_ITEM(call_args, 0, Py_NewRef(callback));
    for (Py_ssize_t i = 0; i < nargs; i++) {
        PyTuple_SET_ITEM(call_args, i + 1, Py_NewRef(argv[i]));
    }
    PyObject *res = PyObject_Call(run, call_args, NULL);
    Py_DECREF(call_args);
    Py_DECREF(run);
    return res;
}

int
fl_handle_run(FlHandle *h)
{
    if (h->cancelled) {
        return 0;
    }
    /* Keep callback and args alive even if the callback cancels us. */
    PyObject *callback = Py_NewRef(h->callback);
    PyObject *args = Py_XNewRef(h->args);
    PyObject *const *argv = args ? &PyTuple_GET_ITEM(args, 0) : NULL;
    Py_ssize_t nargs = args ? PyTuple_GET_SIZE(args) : 0;
    PyObject *res = NULL;
    if (PyContext_CheckExact(h->context)) {
        if (PyContext_Enter(h->context) == 0) {
            res = PyObject_Vectorcall(callback, argv, nargs, NULL);
            if (PyContext_Exit(h->context) < 0) {
                Py_CLEAR(res);
            }
        }
    }
    else {
        /* asyncio calls context.run(callback, *args): any such object works,
           anything else fails here, when the callback runs. */
        res = call_context_run(h->context, callback, argv, nargs);
    }
    Py_DECREF(callback);
    Py_XDECREF(args);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    return fl_handle_report_error(h);
}

int
fl_handle_report_error(FlHandle *h)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    /* Like asyncio: every other exception, the context's own errors
       included, goes to the loop's exception handler. */
    PyObject *exc = fl_err_get_raised();
    PyObject *helper = h->loop->state->helper_callback_error;
    if (helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastloop helpers are not set");
        Py_DECREF(exc);
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(helper, (PyObject *)h, exc, NULL);
    Py_DECREF(exc);
    if (r == NULL) {
        /* call_exception_handler only lets SystemExit/KeyboardInterrupt out. */
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
fl_handle_run_entry(FlLoop *loop, fl_ready_item *item)
{
    return fl_handle_run((FlHandle *)item->arg);
}

void
fl_handle_cancel(FlHandle *h)
{
    if (h->cancelled) {
        return;
    }
    if (Py_TYPE(h) == h->loop->state->timer_handle_type) {
        fl_loop_timer_cancelled(h->loop, (FlTimerHandle *)h);
    }
    h->cancelled = 1;
    if (h->loop->debug && h->repr == NULL) {
        /* Keep what the callback was, for "Executing <Handle ...> took". */
        h->repr = PyObject_Repr((PyObject *)h);
        if (h->repr == NULL) {
            PyErr_Clear();
        }
    }
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
}

/* Handle(callback, args, loop, context=None), as asyncio.Handle. */
static PyObject *
handle_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"callback", "args", "loop", "context", NULL};
    PyObject *callback, *cb_args, *loop, *context = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|O:Handle", kwlist,
                                     &callback, &cb_args, &loop, &context)) {
        return NULL;
    }
    fl_state *st = fl_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->loop_type)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a fastloop loop");
        return NULL;
    }
    PyObject *tuple = PySequence_Tuple(cb_args);
    if (tuple == NULL) {
        return NULL;
    }
    PyObject *h = (PyObject *)fl_handle_new(
        (FlLoop *)loop, type, callback, &PyTuple_GET_ITEM(tuple, 0),
        PyTuple_GET_SIZE(tuple), context);
    Py_DECREF(tuple);
    return h;
}

/* ---- Python-visible methods ---- */

static PyObject *
handle_cancel(FlHandle *h, PyObject *Py_UNUSED(ignored))
{
    fl_handle_cancel(h);
    Py_RETURN_NONE;
}

static PyObject *
handle_cancelled(FlHandle *h, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
handle_get_context(FlHandle *h, PyObject *Py_UNUSED(ignored))
{
    return Py_NewRef(h->context);
}

static PyObject *
handle_py_run(FlHandle *h, PyObject *Py_UNUSED(ignored))
{
    if (fl_handle_run(h) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
handle_repr(FlHandle *h)
{
    if (h->repr != NULL) {
        return Py_NewRef(h->repr);
    }
    PyObject *helper = h->loop->state->helper_handle_repr;
    if (helper == NULL) {
        return PyUnicode_FromFormat("<%s>", Py_TYPE(h)->tp_name);
    }
    return PyObject_CallOneArg(helper, (PyObject *)h);
}

static PyObject *
handle_get_args(FlHandle *h, void *closure)
{
    if (h->args != NULL) {
        return Py_NewRef(h->args);
    }
    if (h->cancelled) {
        Py_RETURN_NONE;
    }
    return PyTuple_New(0);
}

static PyObject *
handle_get_callback(FlHandle *h, void *closure)
{
    return Py_NewRef(h->callback ? h->callback : Py_None);
}

static PyObject *
handle_get_cancelled(FlHandle *h, void *closure)
{
    return PyBool_FromLong(h->cancelled);
}

static PyObject *
handle_get_source_traceback(FlHandle *h, void *closure)
{
    return Py_NewRef(h->source_traceback ? h->source_traceback : Py_None);
}

static int
handle_set_source_traceback(FlHandle *h, PyObject *value, void *closure)
{
    Py_XSETREF(h->source_traceback,
               (value == NULL || value == Py_None) ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *
handle_get_loop(FlHandle *h, void *closure)
{
    return Py_NewRef((PyObject *)h->loop);
}

static PyObject *
handle_get_context_attr(FlHandle *h, void *closure)
{
    return Py_NewRef(h->context);
}

static PyObject *
handle_get_repr_attr(FlHandle *h, void *closure)
{
    return Py_NewRef(h->repr ? h->repr : Py_None);
}

static int
handle_traverse(FlHandle *h, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(h));
    Py_VISIT(h->loop);
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    return 0;
}

static int
handle_clear(FlHandle *h)
{
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    Py_CLEAR(h->loop);
    return 0;
}

static void
handle_dealloc(FlHandle *h)
{
    PyTypeObject *tp = Py_TYPE(h);
    PyObject_GC_UnTrack(h);
    if (h->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)h);
    }
    handle_clear(h);
    tp->tp_free(h);
    Py_DECREF(tp);
}

static PyMethodDef handle_methods[] = {
    {"cancel", (PyCFunction)handle_cancel, METH_NOARGS, NULL},
    {"cancelled", (PyCFunction)handle_cancelled, METH_NOARGS, NULL},
    {"get_context", (PyCFunction)handle_get_context, METH_NOARGS, NULL},
    {"_run", (PyCFunction)handle_py_run, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef handle_getset[] = {
    {"_callback", (getter)handle_get_callback, NULL, NULL, NULL},
    {"_args", (getter)handle_get_args, NULL, NULL, NULL},
    {"_cancelled", (getter)handle_get_cancelled, NULL, NULL, NULL},
    {"_loop", (getter)handle_get_loop, NULL, NULL, NULL},
    {"_context", (getter)handle_get_context_attr, NULL, NULL, NULL},
    {"_repr", (getter)handle_get_repr_attr, NULL, NULL, NULL},
    {"_source_traceback", (getter)handle_get_source_traceback,
     (setter)handle_set_source_traceback, NULL, NULL},
    {NULL},
};

static PyMemberDef handle_members[] = {
    {"__weaklistoffset__", T_PYSSIZET, offsetof(FlHandle, weakreflist), READONLY},
    {NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_new, handle_tp_new},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, handle_methods},
    {Py_tp_getset, handle_getset},
    {Py_tp_members, handle_members},
    {Py_tp_doc, "Object returned by callback registration methods."},
    {0, NULL},
};

PyType_Spec fl_handle_spec = {
    .name = "fastloop.Handle",
    .basicsize = sizeof(FlHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = handle_slots,
};

/* ---- TimerHandle ---- */

static PyObject *
timer_when(FlTimerHandle *t, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(t->when);
}

static PyObject *
timer_get_when(FlTimerHandle *t, void *closure)
{
    return PyFloat_FromDouble(t->when);
}

static PyObject *
timer_get_scheduled(FlTimerHandle *t, void *closure)
{
    return PyBool_FromLong(t->scheduled);
}

static Py_hash_t
timer_hash(FlTimerHandle *t)
{
    /* asyncio hashes a TimerHandle by its deadline. */
    PyObject *when = PyFloat_FromDouble(t->when);
    if (when == NULL) {
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(when);
    Py_DECREF(when);
    return hash;
}

static PyObject *
timer_richcompare(PyObject *a, PyObject *b, int op)
{
    if (Py_TYPE(b) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    FlTimerHandle *x = (FlTimerHandle *)a, *y = (FlTimerHandle *)b;
    int eq = a == b;
    if (!eq && op != Py_LT && op != Py_GT) {
        /* asyncio: equal when all of when, callback, args, cancelled are. */
        eq = x->when == y->when && x->base.cancelled == y->base.cancelled;
        if (eq) {
            eq = PyObject_RichCompareBool(
                x->base.callback ? x->base.callback : Py_None,
                y->base.callback ? y->base.callback : Py_None, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
        }
        if (eq) {
            PyObject *ax = x->base.args ? x->base.args : Py_None;
            PyObject *ay = y->base.args ? y->base.args : Py_None;
            eq = PyObject_RichCompareBool(ax, ay, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
        }
    }
    switch (op) {
    case Py_EQ: return PyBool_FromLong(eq);
    case Py_NE: return PyBool_FromLong(!eq);
    case Py_LT: return PyBool_FromLong(x->when < y->when);
    case Py_GT: return PyBool_FromLong(x->when > y->when);
    case Py_LE: return PyBool_FromLong(x->when < y->when || eq);
    case Py_GE: return PyBool_FromLong(x->when > y->when || eq);
    }
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef timer_methods[] = {
    {"when", (PyCFunction)timer_when, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef timer_getset[] = {
    {"_when", (getter)timer_get_when, NULL, NULL, NULL},
    {"_scheduled", (getter)timer_get_scheduled, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot timer_slots[] = {
    {Py_tp_traverse, handle_traverse},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_hash, timer_hash},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_doc, "Object returned by timed callback registration methods."},
    {0, NULL},
};

PyType_Spec fl_timer_handle_spec = {
    .name = "fastloop.TimerHandle",
    .basicsize = sizeof(FlTimerHandle),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timer_slots,
};
