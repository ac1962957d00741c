/* What the transports (stream.c, udp.c) and the listener (server.c) share.

   The skeleton of a transport: both transport types start their own fields
   with an fl_transport, which holds what asyncio's _SelectorTransport
   keeps for either kind (loop, socket, protocol and its context, watchers,
   write flow control, closing state), and the functions here implement,
   once, what asyncio does with it: close/abort, scheduling
   connection_lost(), pause_writing()/resume_writing() at the water marks,
   fatal-error reports, get_extra_info() & co. What differs per kind (the
   write buffer, what connection_lost() releases) comes from the kind's
   fl_transport_impl.

   Also here: the cold-path reports written in Python (fastloop._network),
   and the method names they all call. */
#ifndef FL_TRANSPORT_H
#define FL_TRANSPORT_H

#include <stddef.h>
#include <sys/types.h>
#include "core/loopcore.h"
#include "core/errors.h"
#include "core/fd.h"

/* What few transports need, allocated on first use, so that an idle
   connection does not pay for it: the file identity of a descriptor that
   is not a socket object's, and exact water marks. */
typedef struct fl_transport_rare {
    dev_t fd_dev;               /* FL_FD_STAT: the file the fd was made on */
    ino_t fd_ino;
    PyObject *water_marks;      /* (low, high) as set, when one of them is
                                   beyond a Py_ssize_t; else NULL */
} fl_transport_rare;

typedef struct {
    PyObject *extra;            /* get_extra_info()'s dict. First: a datagram
                                   transport's is asyncio's `_extra` slot */
    PyObject *dict;             /* the instance __dict__: see fl_transport_of */
    PyObject *weakreflist;
    FlLoop *loop;
    PyObject *sock;             /* the socket (or pipe); NULL once closed */
    PyObject *protocol;
    PyObject *context;          /* the loop's protocol callbacks run in it */
    PyObject *waiter;           /* woken once connection_made() ran */
    struct fl_transport_rare *rare;     /* what few transports need, or NULL */
    ev_io rio, wio;             /* readable, writable */
    Py_ssize_t write_size;      /* get_write_buffer_size() */
    Py_ssize_t high_water, low_water;
    Py_ssize_t conn_lost;       /* >0 once connection_lost() is scheduled;
                                   counts the writes dropped after that */
    int fd;
    int guard_slot;             /* 1 + our index in the loop's fd_guard list
                                   (a watcher started since the last poll:
                                   see fl_transport_watch_start_checked); 0 */
    short lost_errno;           /* fd_lost_entry's errno */
    char impl;                  /* FL_TRANSPORT_STREAM or _DATAGRAM */
    char fd_kind;               /* how fl_transport_fd_ok() knows the fd */
    char fd_lost_queued;        /* fd_lost_entry is in the ready queue */
    char closing;
    char paused;                /* pause_reading() */
    char protocol_paused;       /* protocol.pause_writing() was called */
} fl_transport;

enum { FL_TRANSPORT_STREAM, FL_TRANSPORT_DATAGRAM, FL_TRANSPORT_N_IMPLS };

/* What a kind of transport does its own way. */
typedef struct {
    /* Drops what waits to be written (write_size becomes 0). */
    void (*clear_write_buffer)(PyObject *self);
    /* A ready-queue entry (arg: the transport, callback: the exception or
       None) that calls connection_lost() and releases the transport. */
    fl_ready_fn lost_entry;
    /* asyncio's _fatal_error(exc, message) for this kind; -1 only for
       errors that must stop the loop. */
    int (*fatal_error)(PyObject *self, PyObject *exc, const char *message);
    /* Starts reading once connection_made() ran (see
       fl_transport_schedule_made); -1 only for errors that must stop the
       loop. */
    int (*start_reading)(PyObject *self);
} fl_transport_impl;

/* Each kind registers its own (stream.c, udp.c) at module init, so the
   base never names the kinds above it. */
void fl_transport_register_kind(int kind, const fl_transport_impl *impl);

#define FL_TRANSPORT_DEFAULT_HIGH_WATER (64 * 1024)

/* Both transport types make fl_transport.dict their instance __dict__, so
   the type's tp_dictoffset (inherited by subclasses) finds the header. */
static inline fl_transport *
fl_transport_of(PyObject *self)
{
    return (fl_transport *)((char *)self + Py_TYPE(self)->tp_dictoffset
                            - offsetof(fl_transport, dict));
}

/* Sets up the header of a new transport `self` of kind `impl` on fd: a
   reference to loop, the default water marks, and the watchers, which
   call read_cb and write_cb with `self` as their data. */
void fl_transport_init(PyObject *self, int impl, FlLoop *loop, int fd,
                       void (*read_cb)(struct ev_loop *, ev_io *, int),
                       void (*write_cb)(struct ev_loop *, ev_io *, int));

/* ---- the fd: still the socket's? ----

   A transport keeps its fd number, but its socket (or pipe) object may be
   closed behind its back and the number reused by an unrelated file. Every
   syscall on the number, and every watcher start, first asks
   fl_transport_fd_ok(): for a socket object, one load from the object (see
   fl_socket_fd_now); for anything else, fstat() against the file the
   transport was made on. A transport whose fd is gone fails with
   OSError(EBADF), as asyncio's sock.send() on a closed socket does. */

/* The first field of CPython's PySocketSockObject (Modules/socketmodule.h,
   3.10 to 3.15): the descriptor, -1 once closed or detached. Proven at run
   time against fileno() (fl_socket_prove) before it is trusted. */
typedef struct {
    PyObject_HEAD
    int sock_fd;
} fl_socket_head;

extern PyTypeObject *fl_c_socket_type;  /* _socket.socket */
extern int fl_socket_layout;            /* 1 proven, -1 refuted, 0 unknown */

/* The descriptor a _socket.socket (or subclass) instance holds right now;
   -2 if obj is none or the layout is not proven. Runs no Python code. */
static inline int
fl_socket_fd_now(PyObject *obj)
{
    if (fl_socket_layout > 0 && PyObject_TypeCheck(obj, fl_c_socket_type)) {
        return ((fl_socket_head *)obj)->sock_fd;
    }
    return -2;
}

/* Proves (once) the layout with `fd`, what obj.fileno() just returned;
   then fl_socket_fd_now(obj). */
int fl_socket_prove(PyObject *obj, int fd);

/* FL_FD_NONE: the number was not open when the transport was made (a
   stand-in socket object, as CPython's tests use): every syscall and
   watcher fails with EBADF, which reaches the protocol's connection_lost()
   as asyncio's transport gets there through sock.send(). */
enum { FL_FD_UNKNOWN, FL_FD_SOCKET, FL_FD_STAT, FL_FD_NONE };

/* Records how t->fd is known to be t->sock's (call once t->sock is set):
   -1 with OSError if the socket object was closed meanwhile. */
int fl_transport_bind_fd(fl_transport *t);

int fl_transport_fd_ok_slow(fl_transport *t);

/* asyncio's _ensure_fd_no_transport() when a socket or datagram transport
   is made (3.12+): RuntimeError if a live transport owns fd (its socket
   closed behind its back, the number reused). */
int fl_transport_check_fd_free(FlLoop *loop, int fd, PyObject *sock);

/* Is t->fd still the descriptor of t->sock? Runs no Python code. */
static inline int
fl_transport_fd_ok(fl_transport *t)
{
    if (t->fd_kind == FL_FD_SOCKET) {
        return t->sock != NULL && ((fl_socket_head *)t->sock)->sock_fd == t->fd;
    }
    return fl_transport_fd_ok_slow(t);
}

/* ---- watchers ---- */

/* Starts w; a closed or reused fd is never handed to libev (it would abort
   the process): the transport then fails with EBADF, soon. */
void fl_transport_watch_start_checked(fl_transport *t, ev_io *w);

/* Starts w unless the loop is gone or the socket closed. */
static inline void
fl_transport_watch_start(fl_transport *t, ev_io *w)
{
    if (t->loop->ev != NULL && !ev_is_active(w) && t->fd >= 0) {
        fl_transport_watch_start_checked(t, w);
    }
}

static inline void
fl_transport_watch_stop(fl_transport *t, ev_io *w)
{
    if (t->loop != NULL && t->loop->ev != NULL && ev_is_active(w)) {
        ev_io_stop(t->loop->ev, w);
    }
}

/* The transport's fd is gone (closed, reused, or libev failed to watch it,
   errno `err`): a fatal error for the transport, from the ready queue. */
void fl_transport_fd_lost(fl_transport *t, int err);

/* ---- running protocol callbacks ---- */

/* Leaves `context`, entered with PyContext_Enter(), keeping the error of a
   failed call (rc < 0). Returns rc, or -1 if the context could not be
   left. */
static inline int
fl_transport_exit_context(PyObject *context, int rc)
{
    PyObject *pending = rc < 0 ? fl_err_get_raised() : NULL;
    if (PyContext_Exit(context) < 0) {
        Py_XDECREF(pending);
        return -1;
    }
    if (pending != NULL) {
        fl_err_set_raised(pending);
    }
    return rc;
}

/* fn(self, arg) in `context`: fn's result, or -1 with the error set if
   the context could not be switched. */
static inline int
fl_transport_call_in_context(PyObject *self, PyObject *context,
                             int (*fn)(PyObject *, PyObject *), PyObject *arg)
{
    if (PyContext_Enter(context) < 0) {
        return -1;
    }
    return fl_transport_exit_context(context, fn(self, arg));
}

/* ---- errors ---- */

/* loop.call_exception_handler() with the transport and its protocol;
   arguments borrowed. */
int fl_transport_report(PyObject *self, PyObject *message, PyObject *exc);

/* A protocol callback raised (error set): what must stop the loop stays
   set (-1); the rest goes to the exception handler with `message`. */
int fl_transport_callback_failed(PyObject *self, const char *message);

/* asyncio's _fatal_error(exc, message): OSErrors only logged in debug
   mode, other errors reported; then the transport aborts. -1 only for
   errors that must stop the loop; `exc` borrowed. */
int fl_transport_fatal_error(PyObject *self, PyObject *exc, const char *message);

/* A write after the connection was lost: counted and dropped, with
   `warning` logged once the count reaches asyncio's threshold. */
int fl_transport_write_dropped(PyObject *self, const char *warning);

/* ---- write flow control ---- */

int fl_transport_pause_protocol(PyObject *self);
int fl_transport_resume_protocol(PyObject *self);

/* protocol.pause_writing() once the buffer is above the high-water mark. */
static inline int
fl_transport_maybe_pause_protocol(PyObject *self, fl_transport *t)
{
    if (t->write_size <= t->high_water || t->protocol_paused) {
        return 0;
    }
    return fl_transport_pause_protocol(self);
}

/* protocol.resume_writing() once it drained to the low-water mark. */
static inline int
fl_transport_maybe_resume_protocol(PyObject *self, fl_transport *t)
{
    if (!t->protocol_paused || t->write_size > t->low_water) {
        return 0;
    }
    return fl_transport_resume_protocol(self);
}

/* ---- opening ---- */

/* What asyncio's transports schedule when they are made, in this order
   and soon: protocol.connection_made(self) in the transport's context,
   then the kind's start_reading(), then the waiter's result (unless it was
   cancelled). One ready-queue entry does the three, for every kind.
   RuntimeError if the loop is closed. */
int fl_transport_schedule_made(PyObject *self);

/* ---- closing ---- */

/* connection_lost(exc) soon, from the ready queue (exc NULL: None). */
int fl_transport_schedule_connection_lost(PyObject *self, PyObject *exc);

/* abort(): drops the write buffer, stops reading, connection_lost(exc)
   soon. Once only. */
int fl_transport_force_close(PyObject *self, PyObject *exc);

/* Stops the watchers, forgets the fd's owner and closes the socket through
   its Python object, so that it knows. -1 with an error if close() failed
   (the socket is forgotten all the same). */
int fl_transport_close_sock(PyObject *self);

/* "<Type closing fd=N read=polling write=<idle, bufsize=0>>"; `brief`: only
   "<Type closing fd=N" and `brief_tail`. */
PyObject *fl_transport_repr(PyObject *self, int brief, const char *brief_tail);

/* ---- lifetime ---- */

int fl_transport_traverse(fl_transport *t, visitproc visit, void *arg);
/* Stops the watchers and drops the references, the loop's last. */
void fl_transport_clear(fl_transport *t);

/* ---- what both types offer Python ---- */

PyObject *fl_transport_close_method(PyObject *self, PyObject *unused);
PyObject *fl_transport_abort_method(PyObject *self, PyObject *unused);
PyObject *fl_transport_is_closing(PyObject *self, PyObject *unused);
PyObject *fl_transport_is_reading(PyObject *self, PyObject *unused);
PyObject *fl_transport_get_protocol(PyObject *self, PyObject *unused);
PyObject *fl_transport_get_extra_info(PyObject *self, PyObject *const *args,
                                      Py_ssize_t nargs, PyObject *kwnames);
PyObject *fl_transport_get_write_buffer_size(PyObject *self, PyObject *unused);
PyObject *fl_transport_get_write_buffer_limits(PyObject *self, PyObject *unused);
PyObject *fl_transport_set_write_buffer_limits(PyObject *self, PyObject *args,
                                               PyObject *kwds);

/* What every transport has; a read pipe has nothing more of these. */
#define FL_TRANSPORT_READ_METHODS \
    {"close", fl_transport_close_method, METH_NOARGS, NULL}, \
    {"is_closing", fl_transport_is_closing, METH_NOARGS, NULL}, \
    {"is_reading", fl_transport_is_reading, METH_NOARGS, NULL}, \
    {"get_protocol", fl_transport_get_protocol, METH_NOARGS, NULL}, \
    {"get_extra_info", (PyCFunction)(void (*)(void))fl_transport_get_extra_info, \
     METH_FASTCALL | METH_KEYWORDS, NULL}

#define FL_TRANSPORT_METHODS \
    FL_TRANSPORT_READ_METHODS, \
    {"abort", fl_transport_abort_method, METH_NOARGS, NULL}, \
    {"get_write_buffer_size", fl_transport_get_write_buffer_size, METH_NOARGS, NULL}, \
    {"get_write_buffer_limits", fl_transport_get_write_buffer_limits, METH_NOARGS, NULL}, \
    {"set_write_buffer_limits", \
     (PyCFunction)(void (*)(void))fl_transport_set_write_buffer_limits, \
     METH_VARARGS | METH_KEYWORDS, NULL}

/* The private attributes asyncio's code and tests read on both kinds, and
   the header's __dict__ and weakref slots, as members of `type` (whose
   field `tr` is the header). */
#define FL_TRANSPORT_MEMBERS(type) \
    FL_MEMBER("_sock", T_OBJECT, type, tr.sock), \
    FL_MEMBER("_sock_fd", T_INT, type, tr.fd), \
    FL_MEMBER("_closing", T_BOOL, type, tr.closing), \
    FL_MEMBER("_conn_lost", T_PYSSIZET, type, tr.conn_lost), \
    FL_MEMBER("__dictoffset__", T_PYSSIZET, type, tr.dict), \
    FL_MEMBER("__weaklistoffset__", T_PYSSIZET, type, tr.weakreflist)

/* ---- helpers for the transports and the listener ---- */

/* Calls fastloop._network.<name>(*args) and steals args (NULL: an error
   is already set). 0, or -1 with an exception. */
int fl_transport_call_helper(const char *name, PyObject *args);

/* sock.fileno() as an int; -1 with ValueError("Invalid file descriptor")
   if out of range, or the error fileno() raised. */
int fl_transport_sock_fd(PyObject *sock);

/* Interned method names; set by fl_transport_module_init. */
extern PyObject *fl_str_close, *fl_str_fileno, *fl_str_connection_lost,
    *fl_str_sockname;

int fl_transport_module_init(void);

#endif /* FL_TRANSPORT_H */
