#include "callbacks/handle.h"

Py_ssize_t fl_handle_offset;
static PyTypeObject *handle_type_g;
static PyTypeObject *timer_type_g;
static PyTypeObject *threadsafe_type_g;     /* 3.14+, else NULL */

int
fl_handle_check(PyObject *obj)
{
    PyTypeObject *tp = Py_TYPE(obj);
    return tp == handle_type_g || tp == timer_type_g
           || tp == threadsafe_type_g
           || PyType_IsSubtype(tp, handle_type_g)
           || PyType_IsSubtype(tp, timer_type_g)
           || (threadsafe_type_g && PyType_IsSubtype(tp, threadsafe_type_g));
}

#ifdef FL_HAVE_THREADSAFE_HANDLE
#define FL_TSH(obj) ((FlThreadSafeHandle *)FL_HANDLE(obj))

/* PyMutex_Lock lets go of the GIL while it waits, so the holder (running
   the callback, or another thread's cancel()) can finish. */
static void
tsh_lock(PyObject *self)
{
    FlThreadSafeHandle *h = FL_TSH(self);
    unsigned long me = PyThread_get_thread_ident();
    if (h->owner == me) {
        h->depth++;
        return;
    }
    PyMutex_Lock(&h->lock);
    h->owner = me;
    h->depth = 1;
}

static void
tsh_unlock(PyObject *self)
{
    FlThreadSafeHandle *h = FL_TSH(self);
    if (--h->depth == 0) {
        h->owner = 0;
        PyMutex_Unlock(&h->lock);
    }
}
#define LOCK_IF_THREADSAFE(self) \
    do { if (FL_HANDLE(self)->threadsafe) tsh_lock(self); } while (0)
#define UNLOCK_IF_THREADSAFE(self) \
    do { if (FL_HANDLE(self)->threadsafe) tsh_unlock(self); } while (0)
#else
#define LOCK_IF_THREADSAFE(self) ((void)0)
#define UNLOCK_IF_THREADSAFE(self) ((void)0)
#endif

/* The methods shared by Handle and TimerHandle are bound to asyncio.Handle
   (TimerHandle is not a subclass of our Handle): each checks that it got
   one of ours before it touches our fields. */
#define REQUIRE_OURS(self, ret) \
    FL_REQUIRE_OURS(self, fl_handle_check, "Handle", ret)

PyObject *
fl_handle_new(FlLoop *loop, int kind, PyObject *callback,
              PyObject *const *args, Py_ssize_t nargs, PyObject *context)
{
    int timer = kind == FL_HANDLE_TIMER;
    PyTypeObject *type = timer ? timer_type_g : handle_type_g;
    if (kind == FL_HANDLE_THREADSAFE && threadsafe_type_g != NULL) {
        type = threadsafe_type_g;
    }
    /* tp_alloc zeroes the object and makes room for what the base keeps
       before it (a managed weakref list on 3.12+). */
    PyObject *self = type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    FlHandle *h = FL_HANDLE(self);
    h->loop = (FlLoop *)Py_NewRef(loop);
    h->callback = Py_NewRef(callback);
    h->is_timer = (char)timer;
    h->threadsafe = type == threadsafe_type_g;
    if (nargs > 0) {
        h->args = PyTuple_New(nargs);
        if (h->args == NULL) {
            goto error;
        }
        for (Py_ssize_t i = 0; i < nargs; i++) {
            PyTuple_SET_ITEM(h->args, i, Py_NewRef(args[i]));
        }
    }
    h->context = (context == NULL || context == Py_None)
                 ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (h->context == NULL) {
        goto error;
    }
    if (loop->debug && loop->state->helper_extract_stack) {
        h->source_traceback = PyObject_CallNoArgs(loop->state->helper_extract_stack);
        if (h->source_traceback == NULL) {
            goto error;
        }
    }
    return self;

error:
    Py_DECREF(self);
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

static int run_callback(PyObject *self);

int
fl_handle_run(PyObject *self)
{
    FlHandle *h = FL_HANDLE(self);
    if (!h->threadsafe) {
        return run_callback(self);
    }
    /* Cancelled by another thread after the loop's check: checked again
       under the lock, which cancel() waits for while the callback runs. */
    LOCK_IF_THREADSAFE(self);
    int r = run_callback(self);
    UNLOCK_IF_THREADSAFE(self);
    return r;
}

static int
run_callback(PyObject *self)
{
    FlHandle *h = FL_HANDLE(self);
    if (h->cancelled || h->callback == NULL || h->context == NULL) {
        return 0;   /* cancelled, or cleared by the collector */
    }
    /* Keep callback and args alive even if the callback cancels us. */
    PyObject *callback = Py_NewRef(h->callback);
    PyObject *args = Py_XNewRef(h->args);
    PyObject *const *argv = args ? &PyTuple_GET_ITEM(args, 0) : NULL;
    Py_ssize_t nargs = args ? PyTuple_GET_SIZE(args) : 0;
    PyObject *ctx = Py_NewRef(h->context);
    PyObject *res = NULL;
    if (PyContext_CheckExact(ctx)) {
        if (PyContext_Enter(ctx) == 0) {
            res = PyObject_Vectorcall(callback, argv, nargs, NULL);
            if (PyContext_Exit(ctx) < 0) {
                Py_CLEAR(res);
            }
        }
    }
    else {
        /* asyncio calls context.run(callback, *args): any such object works,
           anything else fails here, when the callback runs. */
        res = call_context_run(ctx, callback, argv, nargs);
    }
    Py_DECREF(ctx);
    Py_DECREF(callback);
    Py_XDECREF(args);
    if (res != NULL) {
        Py_DECREF(res);
        return 0;
    }
    return fl_handle_report_error(self);
}

int
fl_handle_report_error(PyObject *self)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    /* Like asyncio: every other exception, the context's own errors
       included, goes to the loop's exception handler. */
    PyObject *exc = fl_err_get_raised();
    fl_state *st = fl_state_from_type(Py_TYPE(self));
    PyObject *helper = st ? st->helper_callback_error : NULL;
    if (helper == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastloop helpers are not set");
        Py_DECREF(exc);
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(helper, self, exc, NULL);
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
    return fl_handle_run(item->arg);
}

PyObject *
fl_handle_schedule(FlLoop *loop, int kind, PyObject *const *args,
                   Py_ssize_t nargs, PyObject *context)
{
    PyObject *h = fl_handle_new(loop, kind, args[0], args + 1, nargs - 1, context);
    if (h == NULL || fl_loop_recheck_closed(loop, h) < 0) {
        return NULL;
    }
    if (fl_ready_push(&loop->ready, fl_handle_run_entry, h) < 0) {
        Py_DECREF(h);
        return NULL;
    }
    return h;
}

void
fl_handle_cancel(PyObject *self)
{
    FlHandle *h = FL_HANDLE(self);
    if (h->cancelled) {
        return;
    }
    if (h->is_timer) {
        fl_timer_cancelled(h->loop, self);
    }
    h->cancelled = 1;
    if (h->loop->debug && h->repr == NULL && h->callback != NULL) {
        /* Keep what the callback was, for "Executing <Handle ...> took". */
        h->repr = PyObject_Repr(self);
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
    if (fl_loop_from_arg(type, loop) == NULL) {
        return NULL;
    }
    PyObject *tuple = PySequence_Tuple(cb_args);
    if (tuple == NULL) {
        return NULL;
    }
    PyObject *h = fl_handle_new((FlLoop *)loop, 0, callback,
                                &PyTuple_GET_ITEM(tuple, 0),
                                PyTuple_GET_SIZE(tuple), context);
    Py_DECREF(tuple);
    return h;
}

/* __new__ did the work; this only keeps asyncio.Handle.__init__ away. */
static int
handle_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    return 0;
}

/* ---- Python-visible methods ---- */

static PyObject *
handle_cancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    LOCK_IF_THREADSAFE(self);
    fl_handle_cancel(self);
    UNLOCK_IF_THREADSAFE(self);
    Py_RETURN_NONE;
}

static PyObject *
handle_cancelled(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    LOCK_IF_THREADSAFE(self);
    int cancelled = FL_HANDLE(self)->cancelled;
    UNLOCK_IF_THREADSAFE(self);
    return PyBool_FromLong(cancelled);
}

/* The context is NULL once the collector cleared the handle. */
static PyObject *
handle_get_context(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    PyObject *ctx = FL_HANDLE(self)->context;
    return Py_NewRef(ctx ? ctx : Py_None);
}

static PyObject *
handle_py_run(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    if (fl_handle_run(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
handle_repr_info(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    REQUIRE_OURS(self, NULL);
    fl_state *st = fl_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    if (st->helper_handle_repr_info == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "fastloop helpers are not set");
        return NULL;
    }
    return PyObject_CallOneArg(st->helper_handle_repr_info, self);
}

static PyObject *
handle_repr(PyObject *self)
{
    FlHandle *h = FL_HANDLE(self);
    if (h->repr != NULL) {
        return Py_NewRef(h->repr);
    }
    fl_state *st = fl_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return NULL;
    }
    PyObject *helper = st->helper_handle_repr;
    if (helper == NULL) {
        return PyUnicode_FromFormat("<%s>", _PyType_Name(Py_TYPE(self)));
    }
    return PyObject_CallOneArg(helper, self);
}

static PyObject *
handle_get_args(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    FlHandle *h = FL_HANDLE(self);
    if (h->args != NULL) {
        return Py_NewRef(h->args);
    }
    if (h->cancelled) {
        Py_RETURN_NONE;
    }
    return PyTuple_New(0);
}

static PyObject *
handle_get_cancelled(PyObject *self, void *closure)
{
    return handle_cancelled(self, NULL);
}

static PyObject *
handle_get_source_traceback(PyObject *self, void *closure)
{
    REQUIRE_OURS(self, NULL);
    PyObject *tb = FL_HANDLE(self)->source_traceback;
    return Py_NewRef(tb ? tb : Py_None);
}

static int
handle_set_source_traceback(PyObject *self, PyObject *value, void *closure)
{
    REQUIRE_OURS(self, -1);
    Py_XSETREF(FL_HANDLE(self)->source_traceback,
               (value == NULL || value == Py_None) ? NULL : Py_NewRef(value));
    return 0;
}

static int
handle_traverse(PyObject *self, visitproc visit, void *arg)
{
    FlHandle *h = FL_HANDLE(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(h->loop);
    Py_VISIT(h->callback);
    Py_VISIT(h->args);
    Py_VISIT(h->context);
    Py_VISIT(h->source_traceback);
    Py_VISIT(h->repr);
    return 0;
}

/* Keeps the loop: a handle the collector cleared can still be reached
   while the rest of its cycle is torn down (a weakref made by a finalizer,
   a callback fired by another object's death), and every method reads the
   loop. A cycle through the loop is broken by the loop's own tp_clear,
   which drops its ready queue and timers. */
static int
handle_clear(PyObject *self)
{
    FlHandle *h = FL_HANDLE(self);
    Py_CLEAR(h->callback);
    Py_CLEAR(h->args);
    Py_CLEAR(h->context);
    Py_CLEAR(h->source_traceback);
    Py_CLEAR(h->repr);
    return 0;
}

static void
handle_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (tp->tp_weaklistoffset != 0) {
        PyObject_ClearWeakRefs(self);
    }
    handle_clear(self);
    Py_CLEAR(FL_HANDLE(self)->loop);
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* Shared by both types, bound to asyncio.Handle. */
static PyMethodDef handle_methods[] = {
    {"cancel", handle_cancel, METH_NOARGS, NULL},
    {"cancelled", handle_cancelled, METH_NOARGS, NULL},
    {"get_context", handle_get_context, METH_NOARGS, NULL},
    {"_run", handle_py_run, METH_NOARGS, NULL},
    {"_repr_info", handle_repr_info, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* Plain fields (None while NULL): members, at fl_handle_offset. */
static PyMemberDef handle_members[] = {
    FL_MEMBER("_callback", T_OBJECT, FlHandle, callback),
    FL_MEMBER("_loop", T_OBJECT, FlHandle, loop),
    FL_MEMBER("_context", T_OBJECT, FlHandle, context),
    FL_MEMBER("_repr", T_OBJECT, FlHandle, repr),
    {NULL},
};

static PyGetSetDef handle_getset[] = {
    {"_args", handle_get_args, NULL, NULL, NULL},
    {"_cancelled", handle_get_cancelled, NULL, NULL, NULL},
    {"_source_traceback", handle_get_source_traceback,
     handle_set_source_traceback, NULL, NULL},
    {NULL},
};

static PyType_Slot handle_slots[] = {
    {Py_tp_new, handle_tp_new},
    {Py_tp_init, handle_tp_init},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_doc, "Object returned by callback registration methods."},
    {0, NULL},
};

static PyType_Spec handle_spec = {
    .name = "fastloop.Handle",
    .basicsize = 0,     /* set from asyncio's layout at module exec */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = handle_slots,
};

#ifdef FL_HAVE_THREADSAFE_HANDLE
static PyType_Spec threadsafe_spec = {
    .name = "fastloop._ThreadSafeHandle",
    .basicsize = 0,     /* set from asyncio's layout at module exec */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = handle_slots,
};
#endif

/* ---- TimerHandle ---- */

static PyObject *
timer_when(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(FL_TIMER(self)->when);
}

static PyObject *
timer_get_when(PyObject *self, void *closure)
{
    return PyFloat_FromDouble(FL_TIMER(self)->when);
}

static PyObject *
timer_get_scheduled(PyObject *self, void *closure)
{
    return PyBool_FromLong(FL_TIMER(self)->scheduled);
}

static Py_hash_t
timer_hash(PyObject *self)
{
    /* asyncio hashes a TimerHandle by its deadline. */
    PyObject *when = PyFloat_FromDouble(FL_TIMER(self)->when);
    if (when == NULL) {
        return -1;
    }
    Py_hash_t hash = PyObject_Hash(when);
    Py_DECREF(when);
    return hash;
}

static int
timers_equal(PyObject *a, PyObject *b)
{
    FlTimerHandle *x = FL_TIMER(a), *y = FL_TIMER(b);
    if (a == b) {
        return 1;
    }
    /* asyncio: equal when all of when, callback, args, cancelled are.
       Compared through our own references: __eq__ may cancel either
       handle, which drops its callback and args. */
    if (x->when != y->when || x->base.cancelled != y->base.cancelled) {
        return 0;
    }
    PyObject *xc = Py_NewRef(x->base.callback ? x->base.callback : Py_None);
    PyObject *yc = Py_NewRef(y->base.callback ? y->base.callback : Py_None);
    int eq = PyObject_RichCompareBool(xc, yc, Py_EQ);
    Py_DECREF(xc);
    Py_DECREF(yc);
    if (eq <= 0) {
        return eq;
    }
    PyObject *xa = Py_NewRef(x->base.args ? x->base.args : Py_None);
    PyObject *ya = Py_NewRef(y->base.args ? y->base.args : Py_None);
    eq = PyObject_RichCompareBool(xa, ya, Py_EQ);
    Py_DECREF(xa);
    Py_DECREF(ya);
    return eq;
}

static PyObject *
timer_richcompare(PyObject *a, PyObject *b, int op)
{
    if (Py_TYPE(b) != Py_TYPE(a)) {
        Py_RETURN_NOTIMPLEMENTED;
    }
    double wa = FL_TIMER(a)->when, wb = FL_TIMER(b)->when;
    if (op == Py_LT) {
        return PyBool_FromLong(wa < wb);
    }
    if (op == Py_GT) {
        return PyBool_FromLong(wa > wb);
    }
    int eq = timers_equal(a, b);
    if (eq < 0) {
        return NULL;
    }
    switch (op) {
    case Py_EQ: return PyBool_FromLong(eq);
    case Py_NE: return PyBool_FromLong(!eq);
    case Py_LE: return PyBool_FromLong(wa < wb || eq);
    case Py_GE: return PyBool_FromLong(wa > wb || eq);
    }
    Py_RETURN_NOTIMPLEMENTED;
}

static PyMethodDef timer_methods[] = {
    {"when", timer_when, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef timer_getset[] = {
    {"_when", timer_get_when, NULL, NULL, NULL},
    {"_scheduled", timer_get_scheduled, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot timer_slots[] = {
    {Py_tp_init, handle_tp_init},
    {Py_tp_dealloc, handle_dealloc},
    {Py_tp_traverse, handle_traverse},
    {Py_tp_clear, handle_clear},
    {Py_tp_repr, handle_repr},
    {Py_tp_methods, timer_methods},
    {Py_tp_getset, timer_getset},
    {Py_tp_hash, timer_hash},
    {Py_tp_richcompare, timer_richcompare},
    {Py_tp_doc, "Object returned by timed callback registration methods."},
    {0, NULL},
};

static PyType_Spec timer_spec = {
    .name = "fastloop.TimerHandle",
    .basicsize = 0,     /* set from asyncio's layout at module exec */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = timer_slots,
};

/* ---- type creation ---- */

static int
add_shared(PyTypeObject *type, PyTypeObject *owner)
{
    PyObject *dict = type->tp_dict;
    for (PyMethodDef *m = handle_methods; m->ml_name; m++) {
        PyObject *descr = PyDescr_NewMethod(owner, m);
        if (descr == NULL || PyDict_SetItemString(dict, m->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    for (PyGetSetDef *g = handle_getset; g->name; g++) {
        PyObject *descr = PyDescr_NewGetSet(owner, g);
        if (descr == NULL || PyDict_SetItemString(dict, g->name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    return fl_type_add_members(type, handle_members);
}

static PyObject *
make_type(PyObject *module, PyType_Spec *spec, PyObject *base,
          const char *name)
{
    PyObject *type = PyType_FromModuleAndSpec(module, spec, base);
    if (type == NULL) {
        return NULL;
    }
    if (PyModule_AddObjectRef(module, name, type) < 0) {
        Py_DECREF(type);
        return NULL;
    }
    return type;
}

int
fl_handle_add_types(PyObject *module, fl_state *st)
{
    PyObject *events = PyImport_ImportModule("asyncio.events");
    if (events == NULL) {
        return -1;
    }
    PyObject *base = PyObject_GetAttrString(events, "Handle");
    PyObject *timer_base = PyObject_GetAttrString(events, "TimerHandle");
    PyObject *threadsafe_base = NULL;
#ifdef FL_HAVE_THREADSAFE_HANDLE
    if (PyObject_GetOptionalAttrString(events, "_ThreadSafeHandle", &threadsafe_base) < 0) {
        threadsafe_base = NULL;
    }
#endif
    Py_DECREF(events);
    int r = -1;
    if (base == NULL || timer_base == NULL || PyErr_Occurred()) {
        goto done;
    }
    if (!PyType_Check(base) || !PyType_Check(timer_base)
            || ((PyTypeObject *)timer_base)->tp_basicsize
               < ((PyTypeObject *)base)->tp_basicsize) {
        PyErr_SetString(PyExc_ImportError, "unexpected asyncio.Handle layout");
        goto done;
    }
    Py_ssize_t align = (Py_ssize_t)sizeof(void *);
    Py_ssize_t size = ((PyTypeObject *)timer_base)->tp_basicsize;
#ifdef FL_HAVE_THREADSAFE_HANDLE
    if (threadsafe_base != NULL
            && ((PyTypeObject *)threadsafe_base)->tp_basicsize > size) {
        size = ((PyTypeObject *)threadsafe_base)->tp_basicsize;
    }
#endif
    if (fl_handle_offset == 0) {
        fl_handle_offset = (size + align - 1) / align * align;
        fl_members_at(handle_members, fl_handle_offset);
    }
    handle_spec.basicsize = (int)(fl_handle_offset + sizeof(FlHandle));
    timer_spec.basicsize = (int)(fl_handle_offset + sizeof(FlTimerHandle));
    PyObject *handle_type = make_type(module, &handle_spec, base, "Handle");
    PyObject *timer_type = handle_type
        ? make_type(module, &timer_spec, timer_base, "TimerHandle") : NULL;
    if (timer_type == NULL) {
        Py_XDECREF(handle_type);
        goto done;
    }
    st->handle_type = (PyTypeObject *)handle_type;
    st->timer_handle_type = (PyTypeObject *)timer_type;
    handle_type_g = st->handle_type;
    timer_type_g = st->timer_handle_type;
    if (add_shared(handle_type_g, (PyTypeObject *)base) < 0
            || add_shared(timer_type_g, (PyTypeObject *)base) < 0) {
        goto done;
    }
#ifdef FL_HAVE_THREADSAFE_HANDLE
    if (threadsafe_base != NULL && PyType_Check(threadsafe_base)) {
        threadsafe_spec.basicsize = (int)(fl_handle_offset + sizeof(FlThreadSafeHandle));
        PyObject *ts_type = make_type(module, &threadsafe_spec, threadsafe_base,
                                      "_ThreadSafeHandle");
        if (ts_type == NULL) {
            goto done;
        }
        st->threadsafe_handle_type = (PyTypeObject *)ts_type;
        threadsafe_type_g = st->threadsafe_handle_type;
        if (add_shared(threadsafe_type_g, (PyTypeObject *)base) < 0) {
            goto done;
        }
    }
#endif
    r = 0;
done:
    Py_XDECREF(base);
    Py_XDECREF(timer_base);
    Py_XDECREF(threadsafe_base);
    return r;
}
