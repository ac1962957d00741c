/* What the transports and the listener share (see transport.h). */
#include "transports/transport.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/epoll.h>
#endif
#include "loop/io.h"
#include "loop/fdowner.h"

#define LOG_THRESHOLD_FOR_CONNLOST_WRITES 5

PyObject *fl_str_close, *fl_str_fileno, *fl_str_connection_lost, *fl_str_sockname;
static PyObject *str_pause_writing, *str_resume_writing, *str_connection_made;
static PyObject *set_result_unless_cancelled;   /* asyncio.futures' */

/* The kinds, as they registered themselves at module init. */
static const fl_transport_impl *impls[FL_TRANSPORT_N_IMPLS];

void
fl_transport_register_kind(int kind, const fl_transport_impl *impl)
{
    impls[kind] = impl;
}

static PyObject *helpers_module;    /* fastloop._network, imported on first use */

PyTypeObject *fl_c_socket_type;
int fl_socket_layout;

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

/* ---- the fd: still the socket's? ---- */

int
fl_socket_prove(PyObject *obj, int fd)
{
    if (fl_socket_layout == 0 && fl_c_socket_type != NULL
            && PyObject_TypeCheck(obj, fl_c_socket_type)) {
        fl_socket_layout = ((fl_socket_head *)obj)->sock_fd == fd ? 1 : -1;
    }
    return fl_socket_fd_now(obj);
}

/* t->rare, made (zeroed) on first use; NULL with MemoryError. */
static fl_transport_rare *
rare_of(fl_transport *t)
{
    if (t->rare == NULL) {
        t->rare = PyMem_Calloc(1, sizeof(fl_transport_rare));
        if (t->rare == NULL) {
            PyErr_NoMemory();
        }
    }
    return t->rare;
}

int
fl_transport_bind_fd(fl_transport *t)
{
    /* A socket object that holds this very fd (a subclass may override
       fileno(): then the file's identity serves, as for a pipe). */
    int now = fl_socket_prove(t->sock, t->fd);
    if (now == t->fd) {
        t->fd_kind = FL_FD_SOCKET;
        return 0;
    }
    struct stat st;
    if (now == -1) {
        /* Closed since fileno() (Python code ran): the number may be
           someone else's already. */
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (fstat(t->fd, &st) < 0) {
        if (errno == EBADF) {
            t->fd_kind = FL_FD_NONE;
            return 0;
        }
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    fl_transport_rare *rare = rare_of(t);
    if (rare == NULL) {
        return -1;
    }
    t->fd_kind = FL_FD_STAT;
    rare->fd_dev = st.st_dev;
    rare->fd_ino = st.st_ino;
    return 0;
}

int
fl_transport_check_fd_free(FlLoop *loop, int fd, PyObject *sock)
{
#if PY_VERSION_HEX >= 0x030C0000
    /* 3.12's _make_socket_transport() and _make_datagram_transport() call
       _ensure_fd_no_transport(sock); 3.11's do not. */
    return fl_fdowner_check(loop, fd, sock);
#else
    return 0;
#endif
}

int
fl_transport_fd_ok_slow(fl_transport *t)
{
    if (t->sock == NULL || t->fd < 0) {
        return 0;
    }
    if (t->fd_kind == FL_FD_NONE) {
        return 0;
    }
    if (t->fd_kind != FL_FD_STAT) {
        return 1;
    }
    /* A reused number is another file; a dup of the same pipe is no
       stranger, and fine. */
    struct stat st;
    return t->rare != NULL && fstat(t->fd, &st) == 0
        && st.st_dev == t->rare->fd_dev && st.st_ino == t->rare->fd_ino;
}

/* Takes t out of the loop's fd_guard list. */
static void
guard_stop(fl_transport *t)
{
    if (t->guard_slot) {
        t->loop->fd_guard_items[t->guard_slot - 1] = NULL;
        t->guard_slot = 0;
    }
}

static int
fd_lost_fatal(PyObject *self, PyObject *exc)
{
    fl_transport *t = fl_transport_of(self);
    return impls[(int)t->impl]->fatal_error(self, exc, "Fatal error on transport");
}

static int
fd_lost_entry(FlLoop *loop, fl_ready_item *item)
{
    PyObject *self = item->arg;
    fl_transport *t = fl_transport_of(self);
    t->fd_lost_queued = 0;
    if (t->conn_lost || t->protocol == NULL) {
        return 0;
    }
    errno = t->lost_errno;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *exc = fl_err_get_raised();
    if (exc == NULL) {
        return -1;
    }
    int rc = fl_transport_call_in_context(self, t->context, fd_lost_fatal, exc);
    Py_DECREF(exc);
    if (rc < 0 && !fl_err_is_fatal()) {
        PyErr_WriteUnraisable(self);
        rc = 0;
    }
    return rc;
}

void
fl_transport_fd_lost(fl_transport *t, int err)
{
    fl_transport_watch_stop(t, &t->rio);
    fl_transport_watch_stop(t, &t->wio);
    guard_stop(t);
    if (t->fd_lost_queued || t->conn_lost) {
        return;
    }
    t->lost_errno = (short)err;
    /* No Python code here (no exception object yet): callers are in the
       middle of their own work. */
    if (fl_ready_push(&t->loop->ready, fd_lost_entry, (PyObject *)t->rio.data) < 0) {
        PyErr_WriteUnraisable((PyObject *)t->rio.data);
        return;
    }
    t->fd_lost_queued = 1;
}

/* libev registers a started watcher's fd with epoll at the next poll, and
   aborts the process if it was closed meanwhile: Python code between now
   and then may close the socket. The loop's fd_guard runs just before that
   poll and checks the fd of every transport that started a watcher. No
   Python code runs here (fl_transport_fd_lost only queues); entries added
   meanwhile all the same are checked too. */
static void
guard_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    FlLoop *loop = (FlLoop *)w->data;
    ev_prepare_stop(ev, w);
    for (int i = 0; i < loop->fd_guard_count; i++) {
        fl_transport *t = loop->fd_guard_items[i];
        if (t == NULL) {
            continue;
        }
        t->guard_slot = 0;
        if ((ev_is_active(&t->rio) || ev_is_active(&t->wio))
                && !fl_transport_fd_ok(t)) {
            fl_transport_fd_lost(t, EBADF);
        }
    }
    loop->fd_guard_count = 0;
}

/* Queues t for the loop's fd_guard; false if the list cannot grow (the
   caller then does without: the fd was just checked). */
static int
guard_queue(fl_transport *t)
{
    FlLoop *loop = t->loop;
    if (t->guard_slot) {
        return 1;
    }
    if (loop->fd_guard_count == loop->fd_guard_cap) {
        int cap = loop->fd_guard_cap ? loop->fd_guard_cap * 2 : 64;
        void **items = PyMem_Realloc(loop->fd_guard_items, cap * sizeof(void *));
        if (items == NULL) {
            return 0;
        }
        loop->fd_guard_items = items;
        loop->fd_guard_cap = cap;
    }
    if (loop->fd_guard.cb == NULL) {
        ev_prepare_init(&loop->fd_guard, guard_cb);
        loop->fd_guard.data = loop;
    }
    loop->fd_guard_items[loop->fd_guard_count++] = t;
    t->guard_slot = loop->fd_guard_count;
    if (!ev_is_active(&loop->fd_guard)) {
        ev_prepare_start(loop->ev, &loop->fd_guard);
    }
    return 1;
}

void
fl_transport_watch_start_checked(fl_transport *t, ev_io *w)
{
    if (!fl_transport_fd_ok(t)) {
        fl_transport_fd_lost(t, EBADF);
        return;
    }
    ev_io_start(t->loop->ev, w);
    guard_queue(t);
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
    PyObject *exc = fl_err_take_nonfatal();
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
            r = args ? fl_log("debug", args, exc) : -1;
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
        int r = args ? fl_log("warning", args, NULL) : -1;
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

/* ---- opening ---- */

static int
call_connection_made(PyObject *self, PyObject *Py_UNUSED(arg))
{
    PyObject *protocol = fl_transport_of(self)->protocol;
    if (protocol == NULL) {
        return 0;       /* cleared meanwhile */
    }
    Py_INCREF(protocol);    /* connection_made() may replace it */
    PyObject *r = fl_call_method1(protocol, str_connection_made, self);
    Py_DECREF(protocol);
    if (r == NULL) {
        return fl_transport_callback_failed(
            self, "Exception in callback protocol.connection_made()");
    }
    Py_DECREF(r);
    return 0;
}

static int
wake_waiter(PyObject *self, fl_transport *t)
{
    PyObject *waiter = t->waiter;
    if (waiter == NULL) {
        return 0;
    }
    t->waiter = NULL;
    PyObject *r = PyObject_CallFunctionObjArgs(set_result_unless_cancelled,
                                               waiter, Py_None, NULL);
    Py_DECREF(waiter);
    if (r == NULL) {
        return fl_transport_callback_failed(
            self, "Exception in callback _set_result_unless_cancelled()");
    }
    Py_DECREF(r);
    return 0;
}

static int
made_entry(FlLoop *loop, fl_ready_item *item)
{
    PyObject *self = item->arg;
    fl_transport *t = fl_transport_of(self);
    if (fl_transport_call_in_context(self, t->context, call_connection_made,
                                     NULL) < 0
            || impls[(int)t->impl]->start_reading(self) < 0) {
        return -1;
    }
    return wake_waiter(self, t);
}

int
fl_transport_schedule_made(PyObject *self)
{
    FlLoop *loop = fl_transport_of(self)->loop;
    /* Making the transport ran Python code (fileno(), the server's
       _attach(), ...), which may have closed the loop. */
    if (fl_loop_check_closed(loop) < 0) {
        return -1;
    }
    return fl_ready_push(&loop->ready, made_entry, self);
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
    guard_stop(t);
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
    if (t->rare != NULL) {
        Py_VISIT(t->rare->water_marks);
    }
    return 0;
}

void
fl_transport_clear(fl_transport *t)
{
    /* The watchers point at the transport: stop them while the loop is
       still known. */
    fl_transport_watch_stop(t, &t->rio);
    fl_transport_watch_stop(t, &t->wio);
    guard_stop(t);
    Py_CLEAR(t->extra);
    Py_CLEAR(t->dict);
    Py_CLEAR(t->sock);
    Py_CLEAR(t->protocol);
    Py_CLEAR(t->context);
    Py_CLEAR(t->waiter);
    if (t->rare != NULL) {
        Py_CLEAR(t->rare->water_marks);
        PyMem_Free(t->rare);
        t->rare = NULL;
    }
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
    if (t->rare != NULL && t->rare->water_marks != NULL) {
        return Py_NewRef(t->rare->water_marks);
    }
    return Py_BuildValue("(nn)", t->low_water, t->high_water);
}

/* A water mark as a C size: the limit's own value, or PY_SSIZE_T_MAX for a
   bigger one (no write buffer ever reaches it, so it means the same). */
static Py_ssize_t
water_mark_size(PyObject *v)
{
    Py_ssize_t n = PyLong_AsSsize_t(v);
    if (n == -1 && PyErr_Occurred()) {
        PyErr_Clear();      /* v >= 0 was checked: too big */
        n = PY_SSIZE_T_MAX;
    }
    return n;
}

/* asyncio's _set_write_buffer_limits(), with its Python-int arithmetic:
   high=4*low may be far beyond a Py_ssize_t, and asyncio takes it. */
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
    PyObject *h = NULL, *l = NULL, *four = NULL, *ret = NULL;
    if ((high != Py_None && (h = PyNumber_Index(high)) == NULL)
            || (low != Py_None && (l = PyNumber_Index(low)) == NULL)
            || (four = PyLong_FromLong(4)) == NULL) {
        goto done;
    }
    /* asyncio's defaults: high = 4 * low, low = high // 4. */
    if (h == NULL) {
        h = l ? PyNumber_Multiply(four, l)
              : PyLong_FromLong(FL_TRANSPORT_DEFAULT_HIGH_WATER);
        if (h == NULL) {
            goto done;
        }
    }
    if (l == NULL && (l = PyNumber_FloorDivide(h, four)) == NULL) {
        goto done;
    }
    int ok = PyObject_RichCompareBool(h, l, Py_GE);
    if (ok > 0) {
        PyObject *zero = PyLong_FromLong(0);
        ok = zero ? PyObject_RichCompareBool(l, zero, Py_GE) : -1;
        Py_XDECREF(zero);
    }
    if (ok <= 0) {
        if (ok == 0) {
            PyErr_Format(PyExc_ValueError,
                         "high (%R) must be >= low (%R) must be >= 0", h, l);
        }
        goto done;
    }
    fl_transport *t = fl_transport_of(self);
    Py_ssize_t hs = water_mark_size(h), ls = water_mark_size(l);
    PyObject *exact = NULL;
    if (hs == PY_SSIZE_T_MAX || ls == PY_SSIZE_T_MAX) {
        /* get_write_buffer_limits() reports what was asked for. */
        if ((exact = PyTuple_Pack(2, l, h)) == NULL) {
            goto done;
        }
    }
    if (exact != NULL || t->rare != NULL) {
        fl_transport_rare *rare = rare_of(t);
        if (rare == NULL) {
            Py_XDECREF(exact);
            goto done;
        }
        Py_XSETREF(rare->water_marks, exact);
    }
    t->high_water = hs;
    t->low_water = ls;
    if (fl_transport_maybe_pause_protocol(self, t) < 0) {
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    Py_XDECREF(h);
    Py_XDECREF(l);
    Py_XDECREF(four);
    return ret;
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
fl_transport_sock_fd(PyObject *sock)
{
    PyObject *fdobj = fl_call_method0(sock, fl_str_fileno);
    if (fdobj == NULL) {
        return -1;
    }
    long fd = PyLong_AsLong(fdobj);
    Py_DECREF(fdobj);
    return fl_fd_from_long(fd);
}

int
fl_transport_module_init(void)
{
    static const fl_name names[] = {
        {&fl_str_close, "close"},
        {&fl_str_fileno, "fileno"},
        {&fl_str_sockname, "sockname"},
        {&fl_str_connection_lost, "connection_lost"},
        {&str_pause_writing, "pause_writing"},
        {&str_resume_writing, "resume_writing"},
        {&str_connection_made, "connection_made"},
    };
    if (set_result_unless_cancelled == NULL) {
        set_result_unless_cancelled = fl_import_attr(
            "asyncio.futures", "_set_result_unless_cancelled");
        if (set_result_unless_cancelled == NULL) {
            return -1;
        }
    }
    if (fl_c_socket_type == NULL) {
        PyObject *t = fl_import_attr("_socket", "socket");
        if (t == NULL) {
            return -1;
        }
        if (!PyType_Check(t)) {
            Py_DECREF(t);
            PyErr_SetString(PyExc_ImportError, "_socket.socket is not a type");
            return -1;
        }
        fl_c_socket_type = (PyTypeObject *)t;
    }
    return fl_intern(names, sizeof(names) / sizeof(names[0]));
}
