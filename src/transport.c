/* What the transports and the listener share (see transport.h). */
#include "transport.h"
#include "io.h"
#include "fdowner.h"

#define LOG_THRESHOLD_FOR_CONNLOST_WRITES 5

PyObject *fl_str_close, *fl_str_fileno, *fl_str_connection_lost, *fl_str_sockname;
static PyObject *str_pause_writing, *str_resume_writing;

static const fl_transport_impl *const impls[FL_TRANSPORT_N_IMPLS] = {
    [FL_TRANSPORT_STREAM] = &fl_stream_transport_impl,
    [FL_TRANSPORT_DATAGRAM] = &fl_udp_transport_impl,
};

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

void
fl_transport_init(PyObject *self, int impl, FlLoop *loop, int fd,
                  void (*read_cb)(struct ev_loop *, ev_io *, int),
                  void (*write_cb)(struct ev_loop *, ev_io *, int))
{
    fl_transport *t = fl_transport_of(self);
    t->impl = (char)impl;
    t->loop = (FlLoop *)Py_NewRef(loop);
    t->fd = fd;
    t->high_water = FL_TRANSPORT_DEFAULT_HIGH_WATER;
    t->low_water = FL_TRANSPORT_DEFAULT_HIGH_WATER / 4;
    ev_io_init(&t->rio, read_cb, fd, EV_READ);
    ev_io_init(&t->wio, write_cb, fd, EV_WRITE);
    t->rio.data = self;
    t->wio.data = self;
}

/* ---- errors ---- */

int
fl_transport_report(PyObject *self, PyObject *message, PyObject *exc)
{
    fl_transport *t = fl_transport_of(self);
    PyObject *ctx = Py_BuildValue(
        "{s:O,s:O,s:O,s:O}", "message", message, "exception", exc,
        "transport", self, "protocol", t->protocol ? t->protocol : Py_None);
    if (ctx == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod((PyObject *)t->loop,
                                      "call_exception_handler", "O", ctx);
    Py_DECREF(ctx);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

int
fl_transport_callback_failed(PyObject *self, const char *message)
{
    PyObject *exc = fl_transport_take_nonfatal();
    if (exc == NULL) {
        return -1;
    }
    PyObject *msg = PyUnicode_FromString(message);
    int rc = msg ? fl_transport_report(self, msg, exc) : -1;
    Py_XDECREF(msg);
    Py_DECREF(exc);
    return rc;
}

int
fl_transport_log(const char *level, PyObject *args, PyObject *exc_info)
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
fl_transport_fatal_error(PyObject *self, PyObject *exc, const char *message)
{
    fl_transport *t = fl_transport_of(self);
    PyObject *msg = PyUnicode_FromString(message);
    if (msg == NULL) {
        return -1;
    }
    int r = 0;
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        if (t->loop->debug) {
            PyObject *args = Py_BuildValue("(sOO)", "%r: %s", self, msg);
            r = args ? fl_transport_log("debug", args, exc) : -1;
            Py_XDECREF(args);
        }
    }
    else {
        r = fl_transport_report(self, msg, exc);
    }
    Py_DECREF(msg);
    if (r < 0) {
        return -1;
    }
    return fl_transport_force_close(self, exc);
}

int
fl_transport_write_dropped(PyObject *self, const char *warning)
{
    fl_transport *t = fl_transport_of(self);
    if (t->conn_lost >= LOG_THRESHOLD_FOR_CONNLOST_WRITES) {
        PyObject *args = Py_BuildValue("(s)", warning);
        int r = args ? fl_transport_log("warning", args, NULL) : -1;
        Py_XDECREF(args);
        if (r < 0) {
            return -1;
        }
    }
    t->conn_lost++;
    return 0;
}

/* ---- write flow control ---- */

/* protocol.<name>(); errors go to the loop's exception handler, as
   _FlowControlMixin does. */
static int
notify_flow(PyObject *self, PyObject *name, const char *failed)
{
    PyObject *protocol = Py_XNewRef(fl_transport_of(self)->protocol);
    if (protocol == NULL) {
        return 0;
    }
    PyObject *r = fl_call_method0(protocol, name);
    Py_DECREF(protocol);
    if (r == NULL) {
        return fl_transport_callback_failed(self, failed);
    }
    Py_DECREF(r);
    return 0;
}

int
fl_transport_pause_protocol(PyObject *self)
{
    fl_transport_of(self)->protocol_paused = 1;
    return notify_flow(self, str_pause_writing, "protocol.pause_writing() failed");
}

int
fl_transport_resume_protocol(PyObject *self)
{
    fl_transport_of(self)->protocol_paused = 0;
    return notify_flow(self, str_resume_writing, "protocol.resume_writing() failed");
}

/* ---- closing ---- */

int
fl_transport_schedule_connection_lost(PyObject *self, PyObject *exc)
{
    fl_transport *t = fl_transport_of(self);
    if (fl_loop_check_closed(t->loop) < 0) {
        return -1;
    }
    return fl_ready_push_callback(&t->loop->ready, impls[(int)t->impl]->lost_entry,
                                  self, exc ? exc : Py_None, NULL);
}

int
fl_transport_force_close(PyObject *self, PyObject *exc)
{
    fl_transport *t = fl_transport_of(self);
    if (t->conn_lost) {
        return 0;
    }
    if (t->write_size) {
        impls[(int)t->impl]->clear_write_buffer(self);
        fl_transport_watch_stop(t, &t->wio);
    }
    if (!t->closing) {
        t->closing = 1;
        fl_transport_watch_stop(t, &t->rio);
    }
    t->conn_lost++;
    return fl_transport_schedule_connection_lost(self, exc);
}

int
fl_transport_close_sock(PyObject *self)
{
    fl_transport *t = fl_transport_of(self);
    fl_transport_watch_stop(t, &t->rio);
    fl_transport_watch_stop(t, &t->wio);
    PyObject *sock = t->sock;
    if (sock == NULL) {
        return 0;
    }
    fl_fdowner_discard(t->loop, t->fd, self);
    t->sock = NULL;
    PyObject *r = fl_call_method0(sock, fl_str_close);
    Py_DECREF(sock);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

PyObject *
fl_transport_repr(PyObject *self, int brief, const char *brief_tail)
{
    fl_transport *t = fl_transport_of(self);
    const char *state = t->sock == NULL ? " closed" : t->closing ? " closing" : "";
    if (brief) {
        return PyUnicode_FromFormat("<%s%s fd=%d%s>", Py_TYPE(self)->tp_name,
                                    state, t->fd, brief_tail);
    }
    return PyUnicode_FromFormat(
        "<%s%s fd=%d read=%s write=<%s, bufsize=%zd>>", Py_TYPE(self)->tp_name,
        state, t->fd, ev_is_active(&t->rio) ? "polling" : "idle",
        ev_is_active(&t->wio) ? "polling" : "idle", t->write_size);
}

/* ---- lifetime ---- */

int
fl_transport_traverse(fl_transport *t, visitproc visit, void *arg)
{
    Py_VISIT(t->extra);
    Py_VISIT(t->dict);
    Py_VISIT(t->loop);
    Py_VISIT(t->sock);
    Py_VISIT(t->protocol);
    Py_VISIT(t->context);
    Py_VISIT(t->waiter);
    return 0;
}

void
fl_transport_clear(fl_transport *t)
{
    /* The watchers point at the transport: stop them while the loop is
       still known. */
    fl_transport_watch_stop(t, &t->rio);
    fl_transport_watch_stop(t, &t->wio);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->context);
    Py_CLEAR(t->waiter);
}

/* ---- methods ---- */

PyObject *
fl_transport_close_method(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    fl_transport *t = fl_transport_of(self);
    if (t->closing) {
        Py_RETURN_NONE;
    }
    t->closing = 1;
    fl_transport_watch_stop(t, &t->rio);
    if (t->write_size == 0) {
        t->conn_lost++;
        fl_transport_watch_stop(t, &t->wio);
        if (fl_transport_schedule_connection_lost(self, NULL) < 0) {
            return NULL;
        }
    }
    Py_RETURN_NONE;
}

PyObject *
fl_transport_abort_method(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (fl_transport_force_close(self, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

PyObject *
fl_transport_is_closing(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(fl_transport_of(self)->closing);
}

PyObject *
fl_transport_is_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    fl_transport *t = fl_transport_of(self);
    return PyBool_FromLong(!t->closing && !t->paused);
}

PyObject *
fl_transport_get_protocol(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *p = fl_transport_of(self)->protocol;
    return Py_NewRef(p ? p : Py_None);
}

PyObject *
fl_transport_get_extra_info(PyObject *self, PyObject *const *args,
                            Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"name", "default"};
    PyObject *vals[2] = {NULL, Py_None};
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2) {
        PyErr_SetString(PyExc_TypeError,
                        "get_extra_info() takes at most 2 arguments");
        return NULL;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        vals[i] = args[i];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        int k = 0;
        while (k < 2 && PyUnicode_CompareWithASCIIString(name, names[k]) != 0) {
            k++;
        }
        if (k == 2 || k < nargs) {
            PyErr_Format(PyExc_TypeError, "get_extra_info() got an unexpected "
                         "or repeated keyword argument %R", name);
            return NULL;
        }
        vals[k] = args[nargs + i];
    }
    if (vals[0] == NULL) {
        PyErr_SetString(PyExc_TypeError, "get_extra_info() missing 1 required "
                        "positional argument: 'name'");
        return NULL;
    }
    PyObject *extra = fl_transport_of(self)->extra;
    if (extra == NULL) {
        return Py_NewRef(vals[1]);
    }
    PyObject *v = PyDict_GetItemWithError(extra, vals[0]);
    if (v == NULL) {
        return PyErr_Occurred() ? NULL : Py_NewRef(vals[1]);
    }
    return Py_NewRef(v);
}

PyObject *
fl_transport_get_write_buffer_size(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(fl_transport_of(self)->write_size);
}

PyObject *
fl_transport_get_write_buffer_limits(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    fl_transport *t = fl_transport_of(self);
    return Py_BuildValue("(nn)", t->low_water, t->high_water);
}

/* An optional water mark: 1 given, 0 None, -1 error. */
static int
water_mark(PyObject *v, Py_ssize_t *out)
{
    if (v == Py_None) {
        return 0;
    }
    *out = PyNumber_AsSsize_t(v, PyExc_OverflowError);
    return *out == -1 && PyErr_Occurred() ? -1 : 1;
}

PyObject *
fl_transport_set_write_buffer_limits(PyObject *self, PyObject *args,
                                     PyObject *kwds)
{
    static char *kwlist[] = {"high", "low", NULL};
    PyObject *high = Py_None, *low = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|OO:set_write_buffer_limits",
                                     kwlist, &high, &low)) {
        return NULL;
    }
    Py_ssize_t h, l;
    int has_high = water_mark(high, &h);
    int has_low = has_high < 0 ? -1 : water_mark(low, &l);
    if (has_low < 0) {
        return NULL;
    }
    /* asyncio's defaults: high = 4 * low, low = high // 4. */
    if (!has_high) {
        h = has_low ? 4 * l : FL_TRANSPORT_DEFAULT_HIGH_WATER;
    }
    if (!has_low) {
        l = h >= 0 ? h / 4 : -((-h + 3) / 4);    /* Python's floor division */
    }
    if (!(h >= l && l >= 0)) {
        PyErr_Format(PyExc_ValueError, "high (%zd) must be >= low (%zd) must be >= 0",
                     h, l);
        return NULL;
    }
    fl_transport *t = fl_transport_of(self);
    t->high_water = h;
    t->low_water = l;
    if (fl_transport_maybe_pause_protocol(self, t) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- attributes ---- */

#define FIELD(self, closure, type) \
    (*(type *)((char *)fl_transport_of(self) + (size_t)(closure)))

PyObject *
fl_transport_get_object_field(PyObject *self, void *closure)
{
    PyObject *v = FIELD(self, closure, PyObject *);
    return Py_NewRef(v ? v : Py_None);
}

PyObject *
fl_transport_get_bool_field(PyObject *self, void *closure)
{
    return PyBool_FromLong(FIELD(self, closure, char));
}

PyObject *
fl_transport_get_ssize_field(PyObject *self, void *closure)
{
    return PyLong_FromSsize_t(FIELD(self, closure, Py_ssize_t));
}

PyObject *
fl_transport_get_int_field(PyObject *self, void *closure)
{
    return PyLong_FromLong(FIELD(self, closure, int));
}

/* ---- helpers ---- */

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

int
fl_transport_intern(const fl_transport_name *names, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (*names[i].slot == NULL
                && (*names[i].slot = PyUnicode_InternFromString(names[i].name)) == NULL) {
            return -1;
        }
    }
    return 0;
}

int
fl_transport_sock_fd(PyObject *sock)
{
    PyObject *fdobj = fl_call_method0(sock, fl_str_fileno);
    if (fdobj == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    return fl_io_fd_from_long(fd);
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
    static const fl_transport_name names[] = {
        {&fl_str_close, "close"},
        {&fl_str_fileno, "fileno"},
        {&fl_str_sockname, "sockname"},
        {&fl_str_connection_lost, "connection_lost"},
        {&str_pause_writing, "pause_writing"},
        {&str_resume_writing, "resume_writing"},
    };
    return fl_transport_intern(names, sizeof(names) / sizeof(names[0]));
}
