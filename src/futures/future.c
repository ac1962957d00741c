#include "futures/future.h"
#include "core/loopcore.h"
#include "callbacks/handle.h"
#include "futures/task.h"
#include "futures/introspect.h"

Py_ssize_t fl_fields_offset;
PyTypeObject *fl_future_type_g;
PyTypeObject *fl_task_type_g;

/* Future's methods are bound to asyncio.Future, as in asyncio, so that
   fastloop.Future.set_result(task, x) works on a fastloop Task (Task is not
   a subclass of our Future: both extend asyncio's types). Each method checks
   that it really got one of ours before touching our fields. */
#define REQUIRE_OURS(self, ret) \
    FL_REQUIRE_OURS(self, fl_future_is_ours, "Future or Task", ret)

/* Plain fields (None while NULL): members, at fl_fields_offset. */
static PyMemberDef future_common_members[] = {
    FL_MEMBER("_loop", T_OBJECT, FlFutureFields, loop),
    FL_MEMBER("_source_traceback", T_OBJECT, FlFutureFields, source_traceback),
    {NULL},
};

int
fl_future_prepare_specs(PyTypeObject *base_future, PyTypeObject *base_task,
                        Py_ssize_t task_fields_size)
{
    if (base_task->tp_basicsize < base_future->tp_basicsize) {
        PyErr_SetString(PyExc_ImportError, "unexpected asyncio.Task layout");
        return -1;
    }
#if PY_VERSION_HEX >= 0x030C0000 && PY_VERSION_HEX < 0x030D0000
    if (base_task->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        PyErr_SetString(PyExc_ImportError,
                        "asyncio.Task has a managed dict on this Python");
        return -1;
    }
#endif
    Py_ssize_t align = (Py_ssize_t)sizeof(void *);
    Py_ssize_t offset = (base_task->tp_basicsize + align - 1) / align * align;
    if (fl_fields_offset == 0) {
        fl_fields_offset = offset;
        fl_members_at(future_common_members, offset);
    }
    else if (fl_fields_offset != offset) {
        PyErr_SetString(PyExc_ImportError, "asyncio.Task changed size");
        return -1;
    }
    fl_future_spec.basicsize = (int)(fl_fields_offset + sizeof(FlFutureFields));
    fl_task_spec.basicsize = (int)(fl_fields_offset + task_fields_size);
    return 0;
}

int
fl_future_is_ours(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    return tp == fl_future_type_g || tp == fl_task_type_g
           || PyType_IsSubtype(tp, fl_future_type_g)
           || PyType_IsSubtype(tp, fl_task_type_g);
}

int
fl_future_is_exact(PyObject *obj)
{
    return Py_IS_TYPE(obj, fl_future_type_g) || Py_IS_TYPE(obj, fl_task_type_g);
}

static fl_state *
state_of(PyObject *self)
{
    /* Subclasses defined in Python reach our module through their base. */
    return fl_state_from_type(Py_TYPE(self));
}

/* A Future or Task made with __new__ and no __init__, cleared by the
   collector, or whose re-initialization failed has no loop: every method
   that needs one checks, as asyncio's C Future does. Where Python code can
   run between the check and the use, the use checks again. */
static int
check_initialized(PyObject *self)
{
    if (FL_FUT(self)->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Future object is not initialized.");
        return -1;
    }
    return 0;
}

int
fl_future_loop_debug(PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    if (f->fl_loop != NULL) {
        return f->fl_loop->debug;
    }
    if (f->loop == NULL) {
        return check_initialized(self);
    }
    PyObject *loop = Py_NewRef(f->loop);
    PyObject *r = PyObject_CallMethod(loop, "get_debug", NULL);
    Py_DECREF(loop);
    if (r == NULL) {
        return -1;
    }
    int debug = PyObject_IsTrue(r);
    Py_DECREF(r);
    return debug;
}

int
fl_call_with_context(fl_state *st, PyObject *obj, const char *name,
                     PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    PyObject *stack[4];
    assert(nargs <= 2);
    stack[0] = obj;
    for (Py_ssize_t i = 0; i < nargs; i++) {
        stack[1 + i] = args[i];
    }
    stack[1 + nargs] = context ? context : Py_None;
    PyObject *meth = PyUnicode_InternFromString(name);
    if (meth == NULL) {
        return -1;
    }
    PyObject *r = PyObject_VectorcallMethod(meth, stack, 1 + nargs,
                                            st->kwnames_context);
    Py_DECREF(meth);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---- callbacks ---- */

static void
release_callbacks(fl_fut_callback *cbs, Py_ssize_t n, fl_fut_callback *inline_cb)
{
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_XDECREF(cbs[i].fn);
        Py_XDECREF(cbs[i].context);
    }
    if (cbs != inline_cb) {
        PyMem_Free(cbs);
    }
}

/* The ready entry of a done callback on a fastloop loop: callback(future)
   in its context, with no Handle unless something needs one. */
static int
callback_entry(FlLoop *loop, fl_ready_item *item)
{
    PyObject *fut = item->arg, *callback = item->callback, *ctx = item->context;
    if (PyContext_CheckExact(ctx) && PyContext_Enter(ctx) == 0) {
        PyObject *res = PyObject_CallOneArg(callback, fut);
        if (PyContext_Exit(ctx) < 0) {
            Py_CLEAR(res);
        }
        if (res != NULL) {
            Py_DECREF(res);
            return 0;
        }
    }
    /* Cold: an error to report, or a context that is not a Context. Both
       go through the Handle asyncio would have made. */
    PyObject *exc = PyErr_Occurred() ? fl_err_get_raised() : NULL;
    PyObject *h = fl_handle_new(loop, 0, callback, &fut, 1, ctx);
    if (h == NULL) {
        Py_XDECREF(exc);
        return -1;
    }
    int r;
    if (exc != NULL) {
        fl_err_set_raised(exc);
        r = fl_handle_report_error(h);
    }
    else {
        r = fl_handle_run(h);
    }
    Py_DECREF(h);
    return r;
}

/* Runs one done callback soon: in C for a fastloop task waiting on a
   fastloop loop, through a C entry on a fastloop loop (a Handle in debug
   mode, for its reports), through the loop's call_soon() otherwise. */
static int
schedule_one(fl_state *st, PyObject *self, fl_fut_callback *cb)
{
    FlFutureFields *f = FL_FUT(self);
    FlLoop *loop = f->fl_loop;
    if (loop != NULL) {
        if (fl_loop_check_closed(loop) < 0) {
            return -1;
        }
        if (cb->wake != NULL) {
            /* The entry carries the future, as asyncio's __wakeup(future)
               gets it: the task may wait on another one by then. */
            return fl_ready_push_callback(&loop->ready, cb->wake, cb->fn,
                                          self, NULL);
        }
        if (!loop->debug && cb->context != NULL) {
            return fl_ready_push_callback(&loop->ready, callback_entry, self,
                                          cb->fn, cb->context);
        }
        PyObject *args[2] = {cb->fn, self};
        PyObject *h = fl_handle_schedule(loop, FL_HANDLE_PLAIN, args, 2,
                                         cb->context);
        Py_XDECREF(h);
        return h == NULL ? -1 : 0;
    }
    PyObject *fn = cb->fn;
    PyObject *wakeup = NULL;
    if (cb->wake != NULL) {
        /* Not reached: C waiters are only added on fastloop loops. */
        wakeup = fl_task_wakeup_callable(st, fn);
        if (wakeup == NULL) {
            return -1;
        }
        fn = wakeup;
    }
    /* Checked after the allocation above (the collector may run code that
       re-initializes this future), and held across the call. */
    if (check_initialized(self) < 0) {
        Py_XDECREF(wakeup);
        return -1;
    }
    PyObject *floop = Py_NewRef(f->loop);
    PyObject *args[2] = {fn, self};
    int r = fl_call_with_context(st, floop, "call_soon", args, 2, cb->context);
    Py_DECREF(floop);
    Py_XDECREF(wakeup);
    return r;
}

static int
schedule_callbacks(fl_state *st, PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    if (f->ncallbacks == 0) {
        return 0;
    }
    /* Take the list first: a callback scheduled now may add more. */
    fl_fut_callback local_inline = f->inline_callback;
    fl_fut_callback *cbs = f->callbacks == &f->inline_callback
                           ? &local_inline : f->callbacks;
    Py_ssize_t n = f->ncallbacks;
    f->callbacks = NULL;
    f->ncallbacks = f->callbacks_cap = 0;
    int status = 0;
    for (Py_ssize_t i = 0; i < n && status == 0; i++) {
        status = schedule_one(st, self, &cbs[i]);
    }
    release_callbacks(cbs, n, &local_inline);
    return status;
}

int
fl_future_add_callback(fl_state *st, PyObject *self, PyObject *fn,
                       PyObject *context, fl_ready_fn wake)
{
    /* The context first: copying it allocates, and on 3.10/3.11 an
       allocation can run the collector and with it any Python code, which
       may finish, clear or re-initialize this future. Nothing below runs
       Python until the callback is stored or scheduled. */
    if (context == NULL && wake == NULL) {
        context = PyContext_CopyCurrent();
        if (context == NULL) {
            return -1;
        }
    }
    else {
        Py_XINCREF(context);
    }
    FlFutureFields *f = FL_FUT(self);
    if (f->state != FL_PENDING) {
        fl_fut_callback cb = {fn, context, wake};
        int r = schedule_one(st, self, &cb);
        Py_XDECREF(context);
        return r;
    }
    if (f->ncallbacks == f->callbacks_cap) {
        if (f->callbacks == NULL) {
            f->callbacks = &f->inline_callback;
            f->callbacks_cap = 1;
        }
        else {
            Py_ssize_t cap = f->callbacks_cap * 2 + 2;
            fl_fut_callback *cbs;
            if (f->callbacks == &f->inline_callback) {
                cbs = PyMem_Malloc(cap * sizeof(*cbs));
                if (cbs != NULL) {
                    cbs[0] = f->inline_callback;
                }
            }
            else {
                cbs = PyMem_Realloc(f->callbacks, cap * sizeof(*cbs));
            }
            if (cbs == NULL) {
                Py_XDECREF(context);
                PyErr_NoMemory();
                return -1;
            }
            f->callbacks = cbs;
            f->callbacks_cap = cap;
        }
    }
    fl_fut_callback *cb = &f->callbacks[f->ncallbacks++];
    cb->fn = Py_NewRef(fn);
    cb->context = context;
    cb->wake = wake;
    return 0;
}

/* ---- state changes ---- */

static int
check_pending_for_set(fl_state *st, PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    if (check_initialized(self) < 0) {
        return -1;
    }
    if (f->state != FL_PENDING) {
        PyErr_SetString(st->invalid_state_error, "invalid state");
        return -1;
    }
    return 0;
}

int
fl_future_set_result(fl_state *st, PyObject *self, PyObject *result)
{
    if (check_pending_for_set(st, self) < 0) {
        return -1;
    }
    FlFutureFields *f = FL_FUT(self);
    assert(f->result == NULL);
    f->result = Py_NewRef(result);
    f->state = FL_FINISHED;
    return schedule_callbacks(st, self);
}

/* set_exception()'s argument as the exception to store, as asyncio's C
   Future does per version; NULL with an error when it is refused. */
static PyObject *
normalize_exception(PyObject *exc)
{
    PyObject *value;
    if (PyExceptionClass_Check(exc)) {
        value = PyObject_CallNoArgs(exc);
        if (value == NULL) {
            return NULL;
        }
        if (!PyExceptionInstance_Check(value)) {
            Py_DECREF(value);
            PyErr_SetString(PyExc_TypeError, "invalid exception object");
            return NULL;
        }
    }
    else if (PyExceptionInstance_Check(exc)) {
        value = Py_NewRef(exc);
    }
    else {
        PyErr_SetString(PyExc_TypeError, "invalid exception object");
        return NULL;
    }
    /* What asyncio's C Future does: since 3.12.2 it wraps any StopIteration
       in a RuntimeError, before that it refuses exactly StopIteration. */
    if (!fl_future_wraps_stopiteration()) {
        if (Py_IS_TYPE(value, (PyTypeObject *)PyExc_StopIteration)) {
            Py_DECREF(value);
            PyErr_SetString(PyExc_TypeError,
                            "StopIteration interacts badly with generators "
                            "and cannot be raised into a Future");
            return NULL;
        }
    }
    else if (PyErr_GivenExceptionMatches(value, PyExc_StopIteration)) {
        PyObject *wrapped = PyObject_CallFunction(
            PyExc_RuntimeError, "s",
            "StopIteration interacts badly with generators and cannot be "
            "raised into a Future");
        if (wrapped == NULL) {
            Py_DECREF(value);
            return NULL;
        }
        PyException_SetCause(wrapped, Py_NewRef(value));
        PyException_SetContext(wrapped, value);
        value = wrapped;
    }
    return value;
}

int
fl_future_set_exception(fl_state *st, PyObject *self, PyObject *exc)
{
    if (check_pending_for_set(st, self) < 0) {
        return -1;
    }
    PyObject *value = normalize_exception(exc);
    if (value == NULL) {
        return -1;
    }
    /* Making the exception ran Python code (the class's __init__), which
       may have finished or re-initialized this future: check again, as
       asyncio does. */
    if (check_pending_for_set(st, self) < 0) {
        Py_DECREF(value);
        return -1;
    }
    FlFutureFields *f = FL_FUT(self);
    assert(f->exception == NULL && f->exception_tb == NULL);
    f->exception = value;
    f->exception_tb = PyException_GetTraceback(value);
    f->state = FL_FINISHED;
    if (schedule_callbacks(st, self) < 0) {
        return -1;
    }
    f->log_tb = 1;
    return 0;
}

int
fl_future_cancel(fl_state *st, PyObject *self, PyObject *msg)
{
    FlFutureFields *f = FL_FUT(self);
    f->log_tb = 0;
    if (f->state != FL_PENDING) {
        return 0;
    }
    f->state = FL_CANCELLED;
    /* The old message is released last: its finalizer may run any code. */
    PyObject *old_msg = f->cancel_msg;
    f->cancel_msg = Py_XNewRef(msg == Py_None ? NULL : msg);
    int r = schedule_callbacks(st, self);
    Py_XDECREF(old_msg);
    return r < 0 ? -1 : 1;
}

PyObject *
fl_future_make_cancelled_error(fl_state *st, PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    /* 3.11+ (asyncio's C Future) hands back the CancelledError that
       cancelled the task; 3.10 makes a new one chained to it. */
    if (f->cancelled_exc != NULL) {
        PyObject *exc = f->cancelled_exc;
        f->cancelled_exc = NULL;
        return exc;
    }
    PyObject *exc = f->cancel_msg == NULL
        ? PyObject_CallNoArgs(st->cancelled_error)
        : PyObject_CallOneArg(st->cancelled_error, f->cancel_msg);
    if (exc == NULL) {
        return NULL;
    }
    return exc;
}

static int
raise_cancelled(fl_state *st, PyObject *self)
{
    PyObject *exc = fl_future_make_cancelled_error(st, self);
    if (exc == NULL) {
        return -1;
    }
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return -1;
}

PyObject *
fl_future_result(fl_state *st, PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    if (f->state == FL_CANCELLED) {
        raise_cancelled(st, self);
        return NULL;
    }
    if (f->state != FL_FINISHED) {
        PyErr_SetString(st->invalid_state_error, "Result is not set.");
        return NULL;
    }
    f->log_tb = 0;
    if (f->exception != NULL) {
        PyObject *exc = f->exception;
        PyException_SetTraceback(exc, f->exception_tb ? f->exception_tb : Py_None);
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        return NULL;
    }
    return Py_NewRef(f->result ? f->result : Py_None);
}

/* ---- construction and lifetime ---- */

static PyObject *
default_loop(fl_state *st)
{
    PyObject *loop = PyObject_CallNoArgs(st->get_event_loop);
    return loop;
}

/* 3.15+: asyncio's Future and Task refuse a second __init__ (a failed
   first one included, once it got as far as setting the loop). Before,
   __init__ resets the future and starts again. */
int
fl_future_refuses_reinit(PyObject *self)
{
#if PY_VERSION_HEX >= 0x030F0000
    if (FL_FUT(self)->loop != NULL) {
        PyErr_Format(PyExc_RuntimeError, "%s object is already initialized",
                     Py_TYPE(self)->tp_name);
        return 1;
    }
#endif
    return 0;
}

int
fl_future_init(fl_state *st, PyObject *self, PyObject *loop)
{
    if (fl_future_refuses_reinit(self)) {
        return -1;
    }
    fl_future_clear(self);
    FlFutureFields *f = FL_FUT(self);
    f->state = FL_PENDING;
    f->log_tb = 0;
    f->blocking = 0;
    if (loop == NULL || loop == Py_None) {
        loop = default_loop(st);
        if (loop == NULL) {
            return -1;
        }
    }
    else {
        Py_INCREF(loop);
    }
    /* default_loop() ran Python code, which may have initialized this
       future meanwhile: the last loop wins. */
    Py_XSETREF(f->loop, loop);
    f->fl_loop = PyObject_TypeCheck(loop, st->loop_type) ? (FlLoop *)loop : NULL;
    int debug = fl_future_loop_debug(self);
    if (debug < 0) {
        return -1;
    }
    if (debug && st->helper_extract_stack != NULL) {
        PyObject *tb = PyObject_CallNoArgs(st->helper_extract_stack);
        if (tb == NULL) {
            return -1;
        }
        Py_XSETREF(f->source_traceback, tb);
    }
    return 0;
}

int
fl_future_traverse(PyObject *self, visitproc visit, void *arg)
{
    FlFutureFields *f = FL_FUT(self);
    Py_VISIT(f->loop);
    Py_VISIT(f->result);
    Py_VISIT(f->exception);
    Py_VISIT(f->exception_tb);
    Py_VISIT(f->cancel_msg);
    Py_VISIT(f->cancelled_exc);
    Py_VISIT(f->source_traceback);
    for (Py_ssize_t i = 0; i < f->ncallbacks; i++) {
        Py_VISIT(f->callbacks[i].fn);
        Py_VISIT(f->callbacks[i].context);
    }
    return fl_base_traverse_future(self, visit, arg);
}

void
fl_future_clear(PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    fl_fut_callback *cbs = f->callbacks;
    Py_ssize_t n = f->ncallbacks;
    fl_fut_callback local_inline = f->inline_callback;
    if (cbs == &f->inline_callback) {
        cbs = &local_inline;
    }
    f->callbacks = NULL;
    f->ncallbacks = f->callbacks_cap = 0;
    f->fl_loop = NULL;
    Py_CLEAR(f->loop);
    Py_CLEAR(f->result);
    Py_CLEAR(f->exception);
    Py_CLEAR(f->exception_tb);
    Py_CLEAR(f->cancel_msg);
    Py_CLEAR(f->cancelled_exc);
    Py_CLEAR(f->source_traceback);
    fl_base_clear_future(self);
    release_callbacks(cbs, n, &local_inline);
}

void
fl_future_finalize_report(PyObject *self)
{
    FlFutureFields *f = FL_FUT(self);
    if (!f->log_tb || f->exception == NULL || f->loop == NULL) {
        return;
    }
    f->log_tb = 0;
    PyObject *exc = fl_err_get_raised();
    PyObject *context = NULL, *message = NULL, *r = NULL;
    /* Strong references: building the report may run Python code. */
    PyObject *loop = Py_NewRef(f->loop);
    PyObject *exception = Py_NewRef(f->exception);
    PyObject *source_tb = Py_XNewRef(f->source_traceback);
    message = PyUnicode_FromFormat("%s exception was never retrieved",
                                   _PyType_Name(Py_TYPE(self)));
    context = PyDict_New();
    if (message == NULL || context == NULL
            || PyDict_SetItemString(context, "message", message) < 0
            || PyDict_SetItemString(context, "exception", exception) < 0
            || PyDict_SetItemString(context, "future", self) < 0) {
        goto done;
    }
    if (source_tb != NULL
            && PyDict_SetItemString(context, "source_traceback", source_tb) < 0) {
        goto done;
    }
    r = PyObject_CallMethod(loop, "call_exception_handler", "O", context);
done:
    if (r == NULL) {
        PyErr_WriteUnraisable(self);
    }
    Py_XDECREF(r);
    Py_XDECREF(message);
    Py_XDECREF(context);
    Py_DECREF(loop);
    Py_DECREF(exception);
    Py_XDECREF(source_tb);
    if (exc != NULL) {
        fl_err_set_raised(exc);
    }
}

/* ---- the instance dict, which lives in the base's storage ---- */

int
fl_future_visit_dict(PyObject *self, visitproc visit, void *arg)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (Py_TYPE(self)->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        return PyObject_VisitManagedDict(self, visit, arg);
    }
#endif
    Py_ssize_t off = Py_TYPE(self)->tp_dictoffset;
    if (off > 0) {
        Py_VISIT(*(PyObject **)((char *)self + off));
    }
    return 0;
}

void
fl_future_clear_dict(PyObject *self)
{
#if PY_VERSION_HEX >= 0x030D0000
    if (Py_TYPE(self)->tp_flags & Py_TPFLAGS_MANAGED_DICT) {
        PyObject_ClearManagedDict(self);
        return;
    }
#endif
    Py_ssize_t off = Py_TYPE(self)->tp_dictoffset;
    if (off > 0) {
        Py_CLEAR(*(PyObject **)((char *)self + off));
    }
}

static int
future_tp_traverse(PyObject *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    if (fl_future_visit_dict(self, visit, arg) < 0) {
        return -1;
    }
    return fl_future_traverse(self, visit, arg);
}

static int
future_tp_clear(PyObject *self)
{
    fl_future_clear(self);
    fl_future_clear_dict(self);
    return 0;
}

static void
future_tp_finalize(PyObject *self)
{
    fl_future_finalize_report(self);
}

void
fl_future_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;     /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (tp->tp_weaklistoffset != 0) {
        PyObject_ClearWeakRefs(self);
    }
    if (tp->tp_clear != NULL) {
        tp->tp_clear(self);
    }
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyObject *
future_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return type->tp_alloc(type, 0);
}

static int
future_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", NULL};
    PyObject *loop = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:Future", kwlist, &loop)) {
        return -1;
    }
    fl_state *st = state_of(self);
    if (st == NULL) {
        return -1;
    }
    return fl_future_init(st, self, loop);
}

/* ---- Python-visible methods, shared with Task ---- */

/* result() and exception() of a future with no loop: asyncio's wording. */
static int
check_initialized_for_result(fl_state *st, PyObject *self)
{
    if (FL_FUT(self)->loop == NULL) {
        PyErr_SetString(st->invalid_state_error, "Future object is not initialized.");
        return -1;
    }
    return 0;
}

static PyObject *
future_result(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    fl_state *st = state_of(self);
    if (check_initialized_for_result(st, self) < 0) {
        return NULL;
    }
    return fl_future_result(st, self);
}

static PyObject *
future_exception(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    FlFutureFields *f = FL_FUT(self);
    fl_state *st = state_of(self);
    if (check_initialized_for_result(st, self) < 0) {
        return NULL;
    }
    if (f->state == FL_CANCELLED) {
        raise_cancelled(st, self);
        return NULL;
    }
    if (f->state != FL_FINISHED) {
        PyErr_SetString(st->invalid_state_error, "Exception is not set.");
        return NULL;
    }
    f->log_tb = 0;
    return Py_NewRef(f->exception ? f->exception : Py_None);
}

static PyObject *
future_py_set_result(PyObject *self, PyObject *result)
{
    REQUIRE_OURS(self, NULL);
    if (fl_future_set_result(state_of(self), self, result) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
future_py_set_exception(PyObject *self, PyObject *exc)
{
    REQUIRE_OURS(self, NULL);
    if (fl_future_set_exception(state_of(self), self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
future_add_done_callback(PyObject *self, PyObject *const *args,
                         Py_ssize_t nargs, PyObject *kwnames)
{
    REQUIRE_OURS(self, NULL);
    static const char *const kwlist[] = {"", "context", NULL};
    PyObject *fn, *context = Py_None;
    if (nargs == 1 && kwnames == NULL) {
        fn = args[0];
    }
    else {
        PyObject *kw = NULL;
        /* The rare keyword form goes through the generic parser. */
        PyObject *tuple = PyTuple_New(nargs);
        if (tuple == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(tuple, i, Py_NewRef(args[i]));
        }
        if (kwnames != NULL) {
            kw = PyDict_New();
            for (Py_ssize_t i = 0; kw && i < PyTuple_GET_SIZE(kwnames); i++) {
                if (PyDict_SetItem(kw, PyTuple_GET_ITEM(kwnames, i),
                                   args[nargs + i]) < 0) {
                    Py_CLEAR(kw);
                }
            }
            if (kw == NULL) {
                Py_DECREF(tuple);
                return NULL;
            }
        }
        int ok = PyArg_ParseTupleAndKeywords(tuple, kw, "O|$O:add_done_callback",
                                             (char **)kwlist, &fn, &context);
        Py_DECREF(tuple);
        Py_XDECREF(kw);
        if (!ok) {
            return NULL;
        }
    }
    if (FL_FUT(self)->loop == NULL) {
        /* asyncio's wording for this one method */
        PyErr_SetString(PyExc_RuntimeError, "uninitialized Future object");
        return NULL;
    }
    if (fl_future_add_callback(state_of(self), self, fn,
                               context == Py_None ? NULL : context, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* Compares with `fn` on a snapshot, since __eq__ may run any code, the
   removal of callbacks from this very future included; then filters the
   list as it is by then, and releases what it removed once the list is
   consistent again. */
static PyObject *
future_remove_done_callback(PyObject *self, PyObject *fn)
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    FlFutureFields *f = FL_FUT(self);
    Py_ssize_t n = f->ncallbacks;
    if (n == 0) {
        return PyLong_FromLong(0);
    }
    PyObject **matched = PyMem_Calloc(n, sizeof(PyObject *));
    if (matched == NULL) {
        return PyErr_NoMemory();
    }
    Py_ssize_t nmatched = 0;
    for (Py_ssize_t i = 0; i < n; i++) {
        matched[i] = Py_XNewRef(f->callbacks[i].wake ? NULL : f->callbacks[i].fn);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        if (matched[i] == NULL) {
            continue;
        }
        int eq = PyObject_RichCompareBool(matched[i], fn, Py_EQ);
        if (eq < 0) {
            nmatched = -1;
            break;
        }
        if (eq) {
            matched[nmatched++] = matched[i];
        }
        else {
            Py_DECREF(matched[i]);
        }
        if (i >= nmatched) {
            matched[i] = NULL;
        }
    }
    if (nmatched < 0) {
        for (Py_ssize_t i = 0; i < n; i++) {
            Py_XDECREF(matched[i]);
        }
        PyMem_Free(matched);
        return NULL;
    }
    /* Filter the list as it is now. */
    fl_fut_callback *removed = PyMem_Malloc(
        (f->ncallbacks ? f->ncallbacks : 1) * sizeof(fl_fut_callback));
    if (removed == NULL) {
        for (Py_ssize_t i = 0; i < nmatched; i++) {
            Py_DECREF(matched[i]);
        }
        PyMem_Free(matched);
        return PyErr_NoMemory();
    }
    Py_ssize_t kept = 0, nremoved = 0;
    for (Py_ssize_t j = 0; j < f->ncallbacks; j++) {
        fl_fut_callback cb = f->callbacks[j];
        int match = 0;
        for (Py_ssize_t i = 0; cb.wake == NULL && i < nmatched && !match; i++) {
            match = cb.fn == matched[i];
        }
        if (match) {
            removed[nremoved++] = cb;
        }
        else {
            f->callbacks[kept++] = cb;
        }
    }
    f->ncallbacks = kept;
    for (Py_ssize_t i = 0; i < nremoved; i++) {
        Py_XDECREF(removed[i].fn);
        Py_XDECREF(removed[i].context);
    }
    for (Py_ssize_t i = 0; i < nmatched; i++) {
        Py_DECREF(matched[i]);
    }
    PyMem_Free(removed);
    PyMem_Free(matched);
    return PyLong_FromSsize_t(nremoved);
}

static PyObject *
future_py_cancel(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    REQUIRE_OURS(self, NULL);
    PyObject *msg = Py_None;
    if (nargs > 1 || (kwnames != NULL && (PyTuple_GET_SIZE(kwnames) > 1
            || PyUnicode_CompareWithASCIIString(
                   PyTuple_GET_ITEM(kwnames, 0), "msg") != 0))) {
        PyErr_SetString(PyExc_TypeError, "cancel() takes at most one argument 'msg'");
        return NULL;
    }
    if (nargs == 1) {
        msg = args[0];
    }
    else if (kwnames != NULL) {
        msg = args[0];
    }
    if (check_initialized(self) < 0) {
        return NULL;
    }
    int r = fl_future_cancel(state_of(self), self, msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
future_cancelled(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    return PyBool_FromLong(FL_FUT(self)->state == FL_CANCELLED);
}

static PyObject *
future_done(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    return PyBool_FromLong(FL_FUT(self)->state != FL_PENDING);
}

static PyObject *
future_get_loop(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    return Py_NewRef(FL_FUT(self)->loop);
}

static PyObject *
future_py_make_cancelled_error(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    return fl_future_make_cancelled_error(state_of(self), self);
}


static PyObject *
future_tp_repr(PyObject *self)
{
    fl_state *st = state_of(self);
    if (check_initialized(self) < 0) {
        return NULL;    /* as asyncio's: its repr reads the loop */
    }
    if (st == NULL || st->helper_future_repr == NULL) {
        return PyUnicode_FromFormat("<%s>", _PyType_Name(Py_TYPE(self)));
    }
    return PyObject_CallOneArg(st->helper_future_repr, self);
}

PyObject *
fl_future_iter(PyObject *self)
{
    fl_state *st = state_of(self);
    if (st == NULL || check_initialized(self) < 0) {
        return NULL;
    }
    return fl_future_iter_new(st, self);
}

PyMethodDef fl_future_common_methods[] = {
    {"result", future_result, METH_NOARGS, NULL},
    {"exception", future_exception, METH_NOARGS, NULL},
    {"add_done_callback", (PyCFunction)(void (*)(void))future_add_done_callback,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"remove_done_callback", future_remove_done_callback, METH_O, NULL},
    {"cancelled", future_cancelled, METH_NOARGS, NULL},
    {"done", future_done, METH_NOARGS, NULL},
    {"get_loop", future_get_loop, METH_NOARGS, NULL},
    {"_make_cancelled_error", future_py_make_cancelled_error, METH_NOARGS, NULL},
    {"__class_getitem__", Py_GenericAlias, METH_O | METH_CLASS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMethodDef future_methods[] = {
    {"set_result", future_py_set_result, METH_O, NULL},
    {"set_exception", future_py_set_exception, METH_O, NULL},
    {"cancel", (PyCFunction)(void (*)(void))future_py_cancel,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- attributes ---- */

static PyObject *
get_state(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    static const char *names[] = {"PENDING", "CANCELLED", "FINISHED"};
    if (check_initialized(self) < 0) {
        return NULL;
    }
    return PyUnicode_InternFromString(names[FL_FUT(self)->state]);
}

static PyObject *
get_result_attr(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    return Py_NewRef(FL_FUT(self)->result ? FL_FUT(self)->result : Py_None);
}

static PyObject *
get_exception_attr(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    return Py_NewRef(FL_FUT(self)->exception ? FL_FUT(self)->exception : Py_None);
}

/* Builds the list from a snapshot: making its items allocates, which can
   run Python code (the collector) that changes the callbacks. */
static PyObject *
get_callbacks(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    FlFutureFields *f = FL_FUT(self);
    Py_ssize_t n = f->ncallbacks;
    if (n == 0) {
        Py_RETURN_NONE;
    }
    fl_fut_callback *snap = PyMem_Malloc(n * sizeof(*snap));
    if (snap == NULL) {
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        snap[i] = f->callbacks[i];
        Py_INCREF(snap[i].fn);
        Py_XINCREF(snap[i].context);
    }
    PyObject *list = PyList_New(n);
    for (Py_ssize_t i = 0; list != NULL && i < n; i++) {
        fl_fut_callback *cb = &snap[i];
        PyObject *fn = cb->wake ? fl_task_wakeup_callable(state_of(self), cb->fn)
                                : Py_NewRef(cb->fn);
        PyObject *item = fn ? PyTuple_Pack(2, fn, cb->context ? cb->context : Py_None)
                            : NULL;
        Py_XDECREF(fn);
        if (item == NULL) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        Py_DECREF(snap[i].fn);
        Py_XDECREF(snap[i].context);
    }
    PyMem_Free(snap);
    return list;
}

static PyObject *
get_cancel_message(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    PyObject *msg = FL_FUT(self)->cancel_msg;
    return Py_NewRef(msg ? msg : Py_None);
}

static int
set_cancel_message(PyObject *self, PyObject *value, void *closure)
{
    REQUIRE_OURS(self, -1);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    Py_XSETREF(FL_FUT(self)->cancel_msg, value == Py_None ? NULL : Py_NewRef(value));
    return 0;
}

static PyObject *
get_log_traceback(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    if (check_initialized(self) < 0) {
        return NULL;
    }
    return PyBool_FromLong(FL_FUT(self)->log_tb);
}

static int
set_log_traceback(PyObject *self, PyObject *value, void *closure)
{
    REQUIRE_OURS(self, -1);
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return -1;
    }
    if (truth) {
        PyErr_SetString(PyExc_ValueError, "_log_traceback can only be set to False");
        return -1;
    }
    FL_FUT(self)->log_tb = 0;
    return 0;
}

static PyObject *
get_blocking(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    return PyBool_FromLong(FL_FUT(self)->blocking);
}

static int
set_blocking(PyObject *self, PyObject *value, void *closure)
{
    REQUIRE_OURS(self, -1);
    if (check_initialized(self) < 0) {
        return -1;
    }
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return -1;
    }
    FL_FUT(self)->blocking = (unsigned char)truth;
    return 0;
}

#if PY_VERSION_HEX >= 0x030E0000
/* The call graph's awaiters, kept where asyncio's own code writes them. */
static PyObject *
get_awaited_by(PyObject *self, void *closure)
{
    return fl_base_awaited_by_get(self);
}
#endif

PyGetSetDef fl_future_common_getset[] = {
    {"_state", get_state, NULL, NULL, NULL},
    {"_result", get_result_attr, NULL, NULL, NULL},
    {"_exception", get_exception_attr, NULL, NULL, NULL},
    {"_callbacks", get_callbacks, NULL, NULL, NULL},
    {"_cancel_message", get_cancel_message, set_cancel_message, NULL, NULL},
    {"_log_traceback", get_log_traceback, set_log_traceback, NULL, NULL},
    {"_asyncio_future_blocking", get_blocking, set_blocking, NULL, NULL},
#if PY_VERSION_HEX >= 0x030E0000
    {"_asyncio_awaited_by", get_awaited_by, NULL, NULL, NULL},
#endif
    {NULL},
};

static PyType_Slot future_slots[] = {
    {Py_tp_new, future_tp_new},
    {Py_tp_init, future_tp_init},
    {Py_tp_dealloc, fl_future_dealloc},
    {Py_tp_finalize, future_tp_finalize},
    {Py_tp_traverse, future_tp_traverse},
    {Py_tp_clear, future_tp_clear},
    {Py_tp_repr, future_tp_repr},
    {Py_tp_iter, fl_future_iter},
    {Py_am_await, fl_future_iter},
    {Py_tp_doc, "fastloop's Future, in C; a subclass of asyncio.Future."},
    {0, NULL},
};

PyType_Spec fl_future_spec = {
    .name = "fastloop.Future",
    .basicsize = 0,     /* set by fl_future_prepare_specs() */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = future_slots,
};

/* Adds the shared methods and getters to a type made from a spec (a spec
   takes one methods table, and Task overrides some of Future's). */
static int
add_methods(PyTypeObject *type, PyTypeObject *owner, PyMethodDef *methods)
{
    PyObject *dict = type->tp_dict;
    for (PyMethodDef *m = methods; m->ml_name; m++) {
        if (PyDict_GetItemString(dict, m->ml_name) != NULL) {
            continue;
        }
        PyObject *descr = (m->ml_flags & METH_CLASS)
            ? PyDescr_NewClassMethod(type, m) : PyDescr_NewMethod(owner, m);
        if (descr == NULL || PyDict_SetItemString(dict, m->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    return 0;
}

int
fl_future_add_common(PyTypeObject *type, int is_task)
{
    /* Bound to asyncio.Future: see REQUIRE_OURS. */
    PyTypeObject *owner = type->tp_base;
    while (owner->tp_base != NULL && owner->tp_base != &PyBaseObject_Type) {
        owner = owner->tp_base;
    }
    if (add_methods(type, owner, fl_future_common_methods) < 0
            || (!is_task && add_methods(type, owner, future_methods) < 0)) {
        return -1;
    }
    PyObject *dict = type->tp_dict;
    for (PyGetSetDef *g = fl_future_common_getset; g->name; g++) {
        if (PyDict_GetItemString(dict, g->name) != NULL) {
            continue;
        }
        PyObject *descr = PyDescr_NewGetSet(owner, g);
        if (descr == NULL || PyDict_SetItemString(dict, g->name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    return fl_type_add_members(type, future_common_members);
}
