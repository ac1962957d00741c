/* loop.sock_recv(), sock_sendall() and the other sock_* methods.

   asyncio's selector loop implements each as an `async def` that tries the
   syscall at once and, when it would block, registers a reader or writer
   whose Handle retries it and resolves a future. Here each call returns a
   small C coroutine-like object (SockOp) with the same protocol (send,
   throw, close, __await__), so `await loop.sock_recv(...)`,
   create_task(loop.sock_recv(...)) and run_until_complete() work as with
   asyncio. When the syscall would block, the op yields a fastloop Future
   and starts an ev_io watcher of its own; the watcher's callback retries the
   syscall and resolves the future, with no Handle, no partial and no done
   callback per operation.

   For socket.socket and _socket.socket objects the syscalls are made here,
   on the descriptor the socket object holds (recv, recv_into, send); every
   other socket-like object, and the colder operations, go through the
   object's own Python methods exactly as asyncio calls them.

   Lifetime: while its watcher is started, an op holds a reference to itself
   (the selector holds the Handle in asyncio): a task waiting for I/O stays
   alive. The watcher is stopped when the operation completes, when the op
   is thrown into or closed (task cancellation), and, through an ev_cleanup
   watcher, when the loop is closed. */
#include "transports/sock.h"
#include "loop/loop.h"
#include "futures/future.h"
#include "loop/fdowner.h"
#include "transports/transport.h"
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

enum {
    K_RECV, K_RECV_INTO, K_RECVFROM, K_RECVFROM_INTO, K_SENDALL, K_SENDTO,
    K_ACCEPT, K_CONNECT, K_SENDFILE,
};

static const struct {
    const char *name;           /* for __name__ and error messages */
    int events;                 /* what the op waits for */
} kind_info[] = {
    [K_RECV] = {"sock_recv", EV_READ},
    [K_RECV_INTO] = {"sock_recv_into", EV_READ},
    [K_RECVFROM] = {"sock_recvfrom", EV_READ},
    [K_RECVFROM_INTO] = {"sock_recvfrom_into", EV_READ},
    [K_SENDALL] = {"sock_sendall", EV_WRITE},
    [K_SENDTO] = {"sock_sendto", EV_WRITE},
    [K_ACCEPT] = {"sock_accept", EV_READ},
    [K_CONNECT] = {"sock_connect", EV_WRITE},
    [K_SENDFILE] = {"sock_sendfile", EV_WRITE},
};

enum { ST_INIT, ST_RUNNING, ST_WAITING, ST_DONE };

typedef struct {
    PyObject_HEAD
    FlLoop *loop;
    PyObject *sock;
    PyObject *a1;               /* the arguments after sock, as given */
    PyObject *a2;
    PyObject *fut;              /* the future yielded while waiting */
    PyObject *view_obj;         /* generic sendall: memoryview(data) */
    Py_buffer view;             /* fast sendall: the data, while waiting */
    Py_ssize_t pos;             /* sendall: bytes sent; sendfile: total sent */
    Py_ssize_t nbytes;          /* recv: n; recvfrom_into: nbytes */
    Py_ssize_t count;           /* sendfile: bytes wanted, 0 for all */
    Py_ssize_t blocksize;       /* sendfile */
    off_t offset;               /* sendfile: file offset of the next byte */
    int fileno;                 /* sendfile: the file's descriptor */
    int fd;                     /* the watched descriptor */
    unsigned long calls;        /* sendfile: syscalls made so far */
    unsigned char kind;
    unsigned char state;
    unsigned char fast;         /* a plain socket: its fd read directly */
    unsigned char inline_io;    /* retried in the ev_io callback itself */
    unsigned char checked;      /* the ssl/debug checks were done by Python */
    unsigned char watching;     /* io and cleanup watchers started; self-ref */
    unsigned char entry_queued; /* a ready entry will retry the syscall */
    unsigned char has_view;
    ev_io io;
    ev_cleanup cleanup;
    ev_prepare prepare;         /* one-shot: checks the fd before the poll */
} FlSockOp;

#define OP_FROM_IO(w) ((FlSockOp *)((char *)(w) - offsetof(FlSockOp, io)))
#define OP_FROM_CLEANUP(w) \
    ((FlSockOp *)((char *)(w) - offsetof(FlSockOp, cleanup)))
#define OP_FROM_PREPARE(w) \
    ((FlSockOp *)((char *)(w) - offsetof(FlSockOp, prepare)))

/* The descriptor a plain socket holds now (-1 once closed): see
   fl_socket_fd_now() in transport.h, whose layout is proven against
   fileno() before a socket counts as fast. */
#define SOCK_FD(s) (((fl_socket_head *)(s))->sock_fd)

/* Process-wide, like fl_future_type_g: set once by fl_sock_module_init. */
static PyTypeObject *sockop_type;
static PyTypeObject *c_socket_type;     /* _socket.socket */
static PyTypeObject *py_socket_type;    /* socket.socket */
static Py_ssize_t watching_ops;         /* ops with started watchers, all loops */
static PyObject *ssl_socket_type;       /* ssl.SSLSocket, Py_None, or NULL */
static PyObject *sendfile_unavailable;  /* asyncio's SendfileNotAvailableError */

static PyObject *str_recv, *str_recv_into, *str_recvfrom, *str_recvfrom_into,
    *str_send, *str_sendto, *str_accept, *str_connect, *str_setblocking,
    *str_fileno, *str_gettimeout, *str_getsockopt;

/* ---- checks asyncio makes before the first syscall ---- */

/* base_events._check_ssl_socket(). */
static int
check_ssl_socket(PyObject *sock)
{
    if (ssl_socket_type == NULL) {
        PyObject *ssl = PyImport_ImportModule("ssl");
        if (ssl == NULL) {
            PyErr_Clear();
            ssl_socket_type = Py_NewRef(Py_None);
        }
        else {
            ssl_socket_type = PyObject_GetAttrString(ssl, "SSLSocket");
            Py_DECREF(ssl);
            if (ssl_socket_type == NULL) {
                return -1;
            }
        }
    }
    if (ssl_socket_type == Py_None) {
        return 0;
    }
    int r = PyObject_IsInstance(sock, ssl_socket_type);
    if (r > 0) {
        PyErr_SetString(PyExc_TypeError, "Socket cannot be of type SSLSocket");
        return -1;
    }
    return r;
}

/* Debug mode: `sock.gettimeout() != 0` -> ValueError, as asyncio. */
static int
check_nonblocking(PyObject *sock)
{
    PyObject *timeout = PyObject_CallMethodNoArgs(sock, str_gettimeout);
    if (timeout == NULL) {
        return -1;
    }
    PyObject *zero = PyLong_FromLong(0);
    int ne = zero ? PyObject_RichCompareBool(timeout, zero, Py_NE) : -1;
    Py_XDECREF(zero);
    Py_DECREF(timeout);
    if (ne > 0) {
        PyErr_SetString(PyExc_ValueError, "the socket must be non-blocking");
        return -1;
    }
    return ne;
}

/* Is sock a plain socket whose descriptor we may use directly? */
static int
is_fast_socket(PyObject *sock)
{
    if (!Py_IS_TYPE(sock, c_socket_type) && !Py_IS_TYPE(sock, py_socket_type)) {
        return 0;
    }
    if (fl_socket_layout == 0) {
        PyObject *fd = PyObject_CallMethodNoArgs(sock, str_fileno);
        if (fd == NULL) {
            PyErr_Clear();
            return 0;
        }
        long v = PyLong_AsLong(fd);
        Py_DECREF(fd);
        if (v == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            return 0;
        }
        (void)fl_socket_prove(sock, (int)v);
    }
    return fl_socket_layout > 0;
}

/* ---- the watchers ---- */

static void op_io_cb(struct ev_loop *ev, ev_io *w, int revents);
static void op_cleanup_cb(struct ev_loop *ev, ev_cleanup *w, int revents);
static void op_prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents);

/* Starts the watchers. libev hands a new watcher's fd to epoll_ctl only
   when it next polls, and aborts the process if that fd was closed in the
   meantime: the one-shot prepare watcher runs just before, and stops the
   io watcher of a socket closed since. */
static void
op_watch(FlSockOp *op)
{
    FlLoop *loop = op->loop;
    ev_io_init(&op->io, op_io_cb, op->fd, kind_info[op->kind].events);
    ev_init(&op->cleanup, op_cleanup_cb);
    ev_prepare_init(&op->prepare, op_prepare_cb);
    ev_io_start(loop->ev, &op->io);
    ev_cleanup_start(loop->ev, &op->cleanup);
    ev_prepare_start(loop->ev, &op->prepare);
    op->watching = 1;
    watching_ops++;
    Py_INCREF(op);
}

/* Stops the watchers and drops the op's reference to itself: the caller
   must hold its own reference if it goes on using the op. */
static void
op_unwatch(FlSockOp *op)
{
    if (!op->watching) {
        return;
    }
    op->watching = 0;
    watching_ops--;
    struct ev_loop *ev = op->loop->ev;
    if (ev != NULL) {
        /* libev already stopped the io watcher if it reported EV_ERROR;
           ev_io_stop on a stopped watcher does nothing. */
        ev_io_stop(ev, &op->io);
        ev_cleanup_stop(ev, &op->cleanup);
        ev_prepare_stop(ev, &op->prepare);
    }
    Py_DECREF(op);
}

static void
op_release_data(FlSockOp *op)
{
    if (op->has_view) {
        op->has_view = 0;
        PyBuffer_Release(&op->view);
    }
    Py_CLEAR(op->view_obj);
}

/* Ends the operation without a result: throw(), close(), dealloc. */
static void
op_abort(FlSockOp *op)
{
    op->state = ST_DONE;
    op_release_data(op);
    Py_CLEAR(op->fut);
    op_unwatch(op);
}

/* ---- one attempt at the syscall ---- */

typedef enum { R_DONE, R_WAIT, R_ERROR } attempt_t;

static inline int
would_block(int err)
{
    return err == EAGAIN || err == EWOULDBLOCK || err == EINTR;
}

/* The outcome of a Python-level method call, as asyncio sorts it. */
static attempt_t
classify(PyObject *res, PyObject **result)
{
    if (res != NULL) {
        *result = res;
        return R_DONE;
    }
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError)
            || PyErr_ExceptionMatches(PyExc_InterruptedError)) {
        PyErr_Clear();
        return R_WAIT;
    }
    return R_ERROR;
}

static attempt_t
fast_recv(FlSockOp *op, PyObject **result)
{
    Py_ssize_t n = op->nbytes;
    PyObject *buf = PyBytes_FromStringAndSize(NULL, n);
    if (buf == NULL) {
        return R_ERROR;
    }
    ssize_t got = recv(SOCK_FD(op->sock), PyBytes_AS_STRING(buf), n, MSG_DONTWAIT);
    if (got < 0) {
        int err = errno;
        Py_DECREF(buf);
        if (would_block(err)) {
            return R_WAIT;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return R_ERROR;
    }
    if (got != n && _PyBytes_Resize(&buf, got) < 0) {
        return R_ERROR;
    }
    *result = buf;
    return R_DONE;
}

static attempt_t
fast_recv_into(FlSockOp *op, PyObject **result)
{
    Py_buffer pb;
    if (PyObject_GetBuffer(op->a1, &pb, PyBUF_WRITABLE) < 0) {
        return R_ERROR;
    }
    ssize_t got = recv(SOCK_FD(op->sock), pb.buf, pb.len, MSG_DONTWAIT);
    int err = errno;
    PyBuffer_Release(&pb);
    if (got < 0) {
        if (would_block(err)) {
            return R_WAIT;
        }
        errno = err;
        PyErr_SetFromErrno(PyExc_OSError);
        return R_ERROR;
    }
    *result = PyLong_FromSsize_t(got);
    return *result ? R_DONE : R_ERROR;
}

/* Sends what is left of op->view until it is all sent or would block. */
static attempt_t
fast_send_rest(FlSockOp *op, PyObject **result)
{
    while (op->pos < op->view.len) {
        ssize_t n = send(SOCK_FD(op->sock), (char *)op->view.buf + op->pos,
                         op->view.len - op->pos, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n < 0) {
            if (would_block(errno)) {
                return R_WAIT;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            return R_ERROR;
        }
        op->pos += n;
    }
    *result = Py_NewRef(Py_None);
    return R_DONE;
}

static PyObject *
call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

static PyObject *
call_method2(PyObject *obj, PyObject *name, PyObject *a, PyObject *b)
{
    PyObject *args[3] = {obj, a, b};
    return PyObject_VectorcallMethod(name, args, 3 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
}

/* Generic sendall: sock.send(data) first, sock.send(view[pos:]) after. */
static attempt_t
generic_sendall(FlSockOp *op, int first, PyObject **result)
{
    PyObject *res;
    if (first) {
        res = call_method1(op->sock, str_send, op->a1);
    }
    else {
        Py_ssize_t len = PyObject_Size(op->view_obj);
        if (len < 0) {
            return R_ERROR;
        }
        PyObject *rest = PySequence_GetSlice(op->view_obj, op->pos, len);
        if (rest == NULL) {
            return R_ERROR;
        }
        res = call_method1(op->sock, str_send, rest);
        Py_DECREF(rest);
    }
    PyObject *sent = NULL;
    attempt_t a = classify(res, &sent);
    if (a == R_ERROR || (a == R_WAIT && !first)) {
        return a;
    }
    Py_ssize_t n = 0;
    if (a == R_DONE) {
        n = PyLong_AsSsize_t(sent);
        Py_DECREF(sent);
        if (n == -1 && PyErr_Occurred()) {
            return R_ERROR;
        }
    }
    Py_ssize_t len = PyObject_Size(first ? op->a1 : op->view_obj);
    if (len < 0) {
        return R_ERROR;
    }
    op->pos += n;
    if (op->pos == len) {
        *result = Py_NewRef(Py_None);
        return R_DONE;
    }
    if (first && op->view_obj == NULL) {
        op->view_obj = PyMemoryView_FromObject(op->a1);
        if (op->view_obj == NULL) {
            return R_ERROR;
        }
    }
    return R_WAIT;
}

static attempt_t
generic_accept(FlSockOp *op, PyObject **result)
{
    PyObject *res = PyObject_CallMethodNoArgs(op->sock, str_accept);
    attempt_t a = classify(res, &res);
    if (a != R_DONE) {
        return a;
    }
    /* conn, address = sock.accept() */
    PyObject *seq = PySequence_Tuple(res);
    Py_DECREF(res);
    if (seq == NULL) {
        return R_ERROR;
    }
    if (PyTuple_GET_SIZE(seq) != 2) {
        if (PyTuple_GET_SIZE(seq) < 2) {
            PyErr_Format(PyExc_ValueError,
                         "not enough values to unpack (expected 2, got %zd)",
                         PyTuple_GET_SIZE(seq));
        }
        else {
            PyErr_SetString(PyExc_ValueError,
                            "too many values to unpack (expected 2)");
        }
        Py_DECREF(seq);
        return R_ERROR;
    }
    PyObject *r = call_method1(PyTuple_GET_ITEM(seq, 0), str_setblocking, Py_False);
    if (r == NULL) {
        Py_DECREF(seq);
        return R_ERROR;
    }
    Py_DECREF(r);
    *result = seq;
    return R_DONE;
}

/* The connection attempt finished (the socket became writable). */
static attempt_t
generic_connect_done(FlSockOp *op, PyObject **result)
{
    PyObject *lvl = PyLong_FromLong(SOL_SOCKET);
    PyObject *opt = PyLong_FromLong(SO_ERROR);
    PyObject *res = (lvl && opt) ? call_method2(op->sock, str_getsockopt, lvl, opt) : NULL;
    Py_XDECREF(lvl);
    Py_XDECREF(opt);
    attempt_t a = classify(res, &res);
    if (a != R_DONE) {
        return a;
    }
    long err = PyLong_AsLong(res);
    Py_DECREF(res);
    if (err == -1 && PyErr_Occurred()) {
        return R_ERROR;
    }
    if (err != 0) {
        /* OSError(err, f'Connect call failed {address}') */
        PyObject *msg = PyUnicode_FromFormat("Connect call failed %S", op->a1);
        PyObject *exc = msg ? PyObject_CallFunction(PyExc_OSError, "lO", err, msg)
                            : NULL;
        Py_XDECREF(msg);
        if (exc != NULL) {
            PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
            Py_DECREF(exc);
        }
        return R_ERROR;
    }
    *result = Py_NewRef(Py_None);
    return R_DONE;
}

/* The file's position ends where sending stopped: from 3.14 on always, as
   asyncio does (an offset at the end of the file included); before, only
   once something was sent. */
static void
sendfile_update_filepos(FlSockOp *op)
{
    if (op->pos > 0 || PY_VERSION_HEX >= 0x030E0000) {
        (void)lseek(op->fileno, op->offset, SEEK_SET);
    }
}

/* The descriptor a non-fast socket holds now, as asyncio asks sock.fileno()
   before each os.sendfile(); -1 with an error set if fileno() raised. */
static int
sendfile_current_fd(FlSockOp *op)
{
    int fd = fl_socket_fd_now(op->sock);
    if (fd != -2) {
        return fd;      /* a socket.socket subclass: read, no Python code */
    }
    PyObject *f = PyObject_CallMethodNoArgs(op->sock, str_fileno);
    if (f == NULL) {
        return -1;
    }
    fd = fl_fd_from_fileobj(f);
    Py_DECREF(f);
    if (fd < 0) {
        PyErr_Clear();
    }
    return fd;
}

/* asyncio's _sock_sendfile_native_impl(), looping while the socket takes
   data instead of waiting for writability between calls. */
static attempt_t
sendfile_attempt(FlSockOp *op, PyObject **result)
{
    for (;;) {
        if (op->count) {
            op->blocksize = op->count - op->pos;
            if (op->blocksize <= 0) {
                break;
            }
        }
        int fd = op->fast ? SOCK_FD(op->sock) : sendfile_current_fd(op);
        if (fd < 0 && PyErr_Occurred()) {
            return R_ERROR;
        }
        off_t off = op->offset;
        ssize_t sent;
        int err;
        if (!op->fast && fd != op->fd) {
            /* Closed since the transfer began (the number we started on
               may be another socket's by now). */
            sent = -1;
            err = EBADF;
        }
        else {
            sent = sendfile(fd, op->fileno, &off, (size_t)op->blocksize);
            err = errno;
        }
        op->calls++;
        if (sent < 0 && would_block(err)) {
            return R_WAIT;
        }
        if (sent < 0) {
            sendfile_update_filepos(op);
            if (op->pos == 0) {
                /* Not a file sendfile() can read (or similar): the caller
                   falls back to read()/send(). */
                PyErr_SetString(sendfile_unavailable, "os.sendfile call failed");
                return R_ERROR;
            }
            errno = err;
            PyErr_SetFromErrno(PyExc_OSError);
            if (op->calls > 1 && err == ENOTCONN) {
                /* The peer went away mid-transfer: ConnectionError, as on
                   every POSIX system, with the original as its cause. */
                PyObject *cause = fl_err_get_raised();
                PyObject *exc = PyObject_CallFunction(
                    PyExc_ConnectionError, "si", "socket is not connected", ENOTCONN);
                if (exc == NULL) {
                    Py_DECREF(cause);
                    return R_ERROR;
                }
                PyException_SetCause(exc, cause);
                PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
                Py_DECREF(exc);
            }
            return R_ERROR;
        }
        if (sent == 0) {
            break;      /* end of file */
        }
        op->offset += sent;
        op->pos += sent;
    }
    sendfile_update_filepos(op);
    *result = PyLong_FromSsize_t(op->pos);
    return *result ? R_DONE : R_ERROR;
}

/* One try at the operation; `first` is the try made when awaited. */
static attempt_t
op_attempt(FlSockOp *op, int first, PyObject **result)
{
    PyObject *res;
    switch (op->kind) {
    case K_RECV:
        if (op->fast) {
            return fast_recv(op, result);
        }
        res = call_method1(op->sock, str_recv, op->a1);
        return classify(res, result);
    case K_RECV_INTO:
        if (op->fast) {
            return fast_recv_into(op, result);
        }
        res = call_method1(op->sock, str_recv_into, op->a1);
        return classify(res, result);
    case K_RECVFROM:
        res = call_method1(op->sock, str_recvfrom, op->a1);
        return classify(res, result);
    case K_RECVFROM_INTO:
        res = call_method2(op->sock, str_recvfrom_into, op->a1, op->a2);
        return classify(res, result);
    case K_SENDALL:
        if (op->fast) {
            return fast_send_rest(op, result);
        }
        return generic_sendall(op, first, result);
    case K_SENDTO:
        if (first) {
            res = call_method2(op->sock, str_sendto, op->a1, op->a2);
        }
        else {
            PyObject *zero = PyLong_FromLong(0);
            if (zero == NULL) {
                return R_ERROR;
            }
            PyObject *args[4] = {op->sock, op->a1, zero, op->a2};
            res = PyObject_VectorcallMethod(
                str_sendto, args, 4 | PY_VECTORCALL_ARGUMENTS_OFFSET, NULL);
            Py_DECREF(zero);
        }
        return classify(res, result);
    case K_ACCEPT:
        return generic_accept(op, result);
    case K_CONNECT:
        if (first) {
            res = call_method1(op->sock, str_connect, op->a1);
            return classify(res, result);
        }
        return generic_connect_done(op, result);
    case K_SENDFILE:
        return sendfile_attempt(op, result);
    }
    PyErr_SetString(PyExc_SystemError, "bad sock op");
    return R_ERROR;
}

/* ---- starting: the first send() ---- */

/* The descriptor to watch, validated as asyncio's selector would. */
static int
op_find_fd(FlSockOp *op)
{
    int fd;
    if (op->fast) {
        fd = SOCK_FD(op->sock);
        if (fd < 0) {
            PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", fd);
            return -1;
        }
    }
    else {
        PyObject *f = PyObject_CallMethodNoArgs(op->sock, str_fileno);
        if (f == NULL) {
            return -1;
        }
        fd = fl_fd_from_fileobj(f);
        Py_DECREF(f);
        if (fd < 0) {
            return -1;
        }
    }
    if (fl_fd_check_open(fd) < 0) {
        return -1;
    }
    return fd;
}

/* The operation would block: a future to yield and a watcher to fire. */
static PyObject *
op_begin_wait(FlSockOp *op)
{
    FlLoop *loop = op->loop;
    int fd = op_find_fd(op);
    if (fd < 0 || fl_loop_check_closed(loop) < 0
            || fl_fdowner_check(loop, fd, NULL) < 0) {
        return NULL;
    }
    fl_state *st = loop->state;
    PyObject *fut = st->future_type->tp_alloc(st->future_type, 0);
    if (fut == NULL) {
        return NULL;
    }
    if (fl_future_init(st, fut, (PyObject *)loop) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    /* Python code ran since the checks (fileno(), the fd map, the
       allocations): libev must not be handed a destroyed loop. A closed fd
       is caught by the prepare watcher, just before the poll. */
    if (fl_loop_check_closed(loop) < 0) {
        Py_DECREF(fut);
        return NULL;
    }
    op->fd = fd;
    op->fut = fut;
    op_watch(op);
    FL_FUT(fut)->blocking = 1;
    return Py_NewRef(fut);
}

/* What asyncio's coroutine does before its first syscall: the checks, and
   the argument handling that belongs to the coroutine body. */
static int
op_prepare(FlSockOp *op)
{
    op->fast = is_fast_socket(op->sock);
    if (!op->checked) {
        if (!op->fast && check_ssl_socket(op->sock) < 0) {
            return -1;
        }
        if (op->loop->debug && check_nonblocking(op->sock) < 0) {
            return -1;
        }
    }
    switch (op->kind) {
    case K_RECV:
        if (op->fast) {
            /* Anything but a plain, non-negative int: let sock.recv() raise
               its own error. */
            op->nbytes = PyLong_CheckExact(op->a1) ? PyLong_AsSsize_t(op->a1) : -1;
            if (op->nbytes < 0) {
                PyErr_Clear();
                op->fast = 0;
            }
        }
        break;
    case K_RECV_INTO:
        if (op->fast) {
            Py_buffer pb;
            if (PyObject_GetBuffer(op->a1, &pb, PyBUF_WRITABLE) < 0) {
                PyErr_Clear();
                op->fast = 0;
            }
            else {
                PyBuffer_Release(&pb);
            }
        }
        break;
    case K_RECVFROM_INTO: {
        /* if not nbytes: nbytes = len(buf) */
        int truth = PyObject_IsTrue(op->a2);
        if (truth < 0) {
            return -1;
        }
        if (!truth) {
            Py_ssize_t len = PyObject_Size(op->a1);
            if (len < 0) {
                return -1;
            }
            PyObject *n = PyLong_FromSsize_t(len);
            if (n == NULL) {
                return -1;
            }
            Py_SETREF(op->a2, n);
        }
        break;
    }
    case K_SENDALL:
        if (op->fast) {
            if (PyObject_GetBuffer(op->a1, &op->view, PyBUF_SIMPLE) < 0) {
                PyErr_Clear();
                op->fast = 0;
            }
            else {
                op->has_view = 1;
            }
        }
        break;
    case K_ACCEPT:
        if (!op->fast) {
            /* asyncio asks for the descriptor before accept() */
            PyObject *f = PyObject_CallMethodNoArgs(op->sock, str_fileno);
            if (f == NULL) {
                return -1;
            }
            Py_DECREF(f);
        }
        break;
    case K_SENDFILE:
        if (!op->fast) {
            PyObject *f = PyObject_CallMethodNoArgs(op->sock, str_fileno);
            op->fd = f ? fl_fd_from_fileobj(f) : -1;
            Py_XDECREF(f);
            if (op->fd < 0) {
                return -1;
            }
        }
        break;
    }
    /* Only syscalls made here may run inside libev's callback. */
    op->inline_io = op->fast && (op->kind == K_RECV || op->kind == K_RECV_INTO
                                 || op->kind == K_SENDALL
                                 || op->kind == K_SENDFILE);
    return 0;
}

/* The first step: PYGEN_RETURN with the result, PYGEN_NEXT with the future
   to wait for, or PYGEN_ERROR. */
static PySendResult
op_start(FlSockOp *op, PyObject **presult)
{
    PyObject *result = NULL;
    op->state = ST_RUNNING;
    if (op_prepare(op) < 0) {
        goto error;
    }
    attempt_t a = op_attempt(op, 1, &result);
    if (a == R_ERROR) {
        goto error;
    }
    if (a == R_DONE) {
        op->state = ST_DONE;
        op_release_data(op);
        *presult = result;
        return PYGEN_RETURN;
    }
    PyObject *fut = op_begin_wait(op);
    if (fut == NULL) {
        goto error;
    }
    op->state = ST_WAITING;
    *presult = fut;
    return PYGEN_NEXT;
error:
    op_abort(op);
    *presult = NULL;
    return PYGEN_ERROR;
}

/* ---- readiness ---- */

/* The descriptor is ready: retry, and settle the future unless it would
   block again. -1 only for SystemExit/KeyboardInterrupt from a Python
   method, which stop the loop as in asyncio (the op keeps waiting). */
static int
op_on_ready(FlSockOp *op)
{
    if (!op->watching || op->fut == NULL) {
        return 0;
    }
    Py_INCREF(op);
    int r = 0;
    fl_state *st = op->loop->state;
    PyObject *fut = op->fut;
    if (FL_FUT(fut)->state != FL_PENDING) {
        /* cancelled: the task will throw into the op soon; stop now, so
           the data stays in the socket */
        op_unwatch(op);
        goto done;
    }
    PyObject *result = NULL;
    attempt_t a = op_attempt(op, 0, &result);
    if (a == R_WAIT) {
        goto done;
    }
    if (a == R_DONE) {
        r = fl_future_set_result(st, fut, result);
        Py_DECREF(result);
    }
    else {
        if (PyErr_ExceptionMatches(PyExc_SystemExit)
                || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
            r = -1;
            goto done;
        }
        PyObject *exc = fl_err_get_raised();
        r = fl_future_set_exception(st, fut, exc);
        Py_DECREF(exc);
    }
    op_release_data(op);
    op_unwatch(op);
done:
    Py_DECREF(op);
    return r < 0 ? -1 : 0;
}

static int
op_ready_entry(FlLoop *loop, fl_ready_item *item)
{
    FlSockOp *op = (FlSockOp *)item->arg;
    op->entry_queued = 0;
    return op_on_ready(op);
}

static void
op_io_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlSockOp *op = OP_FROM_IO(w);
    FlLoop *loop = op->loop;
    loop->io_events++;
    if (revents & EV_ERROR) {
        /* libev could not watch the descriptor (closed, or epoll_ctl
           refused it) and stopped the watcher: fail with the reason. */
        if (op->fut != NULL && FL_FUT(op->fut)->state == FL_PENDING) {
            errno = fl_fd_watch_errno(op->fd);
            PyErr_SetFromErrno(PyExc_OSError);
            PyObject *exc = fl_err_get_raised();
            if (fl_future_set_exception(loop->state, op->fut, exc) < 0) {
                PyErr_WriteUnraisable((PyObject *)op);
            }
            Py_DECREF(exc);
        }
        op_release_data(op);
        op_unwatch(op);
        return;
    }
    if (op->inline_io) {
        /* Pure C: no user code can run, so it runs right here, and the
           waiting task steps in this same iteration. */
        if (op_on_ready(op) < 0) {
            PyErr_WriteUnraisable((PyObject *)op);
        }
        return;
    }
    /* Python methods run from the ready queue, where a KeyboardInterrupt
       may stop the loop, as asyncio's reader/writer handles. */
    if (!op->entry_queued) {
        if (fl_ready_push(&loop->ready, op_ready_entry, (PyObject *)op) < 0) {
            PyErr_WriteUnraisable((PyObject *)op);
            return;
        }
        op->entry_queued = 1;
    }
}

static void
op_prepare_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    FlSockOp *op = OP_FROM_PREPARE(w);
    ev_prepare_stop(ev, w);
    int closed = op->fast ? SOCK_FD(op->sock) != op->fd
                          : !fl_fd_is_open(op->fd);
    if (closed) {
        /* Closed under the operation. asyncio's epoll forgets such an fd
           and the operation never completes; so here: nothing is polled,
           and the op stays as it is until cancelled or the loop closes. */
        ev_io_stop(ev, &op->io);
    }
}

static void
op_cleanup_cb(struct ev_loop *ev, ev_cleanup *w, int revents)
{
    /* The loop is being closed: forget the operation, as asyncio's
       selector forgets its handles. */
    op_unwatch(OP_FROM_CLEANUP(w));
}

/* ---- the coroutine protocol ---- */

static PySendResult
op_am_send(FlSockOp *op, PyObject *arg, PyObject **presult)
{
    switch (op->state) {
    case ST_INIT:
        if (arg != Py_None) {
            PyErr_SetString(PyExc_TypeError,
                            "can't send non-None value to a just-started coroutine");
            *presult = NULL;
            return PYGEN_ERROR;
        }
        return op_start(op, presult);
    case ST_WAITING: {
        PyObject *fut = op->fut;
        if (FL_FUT(fut)->state == FL_PENDING) {
            op_abort(op);
            PyErr_SetString(PyExc_RuntimeError, "await wasn't used with future");
            *presult = NULL;
            return PYGEN_ERROR;
        }
        op->fut = NULL;
        op_abort(op);
        *presult = fl_future_result(op->loop->state, fut);
        Py_DECREF(fut);
        return *presult ? PYGEN_RETURN : PYGEN_ERROR;
    }
    case ST_RUNNING:
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        break;
    default:
        PyErr_SetString(PyExc_RuntimeError, "cannot reuse already awaited coroutine");
        break;
    }
    *presult = NULL;
    return PYGEN_ERROR;
}

/* Finishes a send() for callers that want StopIteration. */
static PyObject *
send_result(PySendResult r, PyObject *result)
{
    if (r != PYGEN_RETURN) {
        return result;          /* the yielded future, or NULL on error */
    }
    if (result == Py_None) {
        Py_DECREF(result);
        PyErr_SetNone(PyExc_StopIteration);
        return NULL;
    }
    /* StopIteration(value): an instance, so a tuple is not unpacked. */
    PyObject *stop = PyObject_CallOneArg(PyExc_StopIteration, result);
    Py_DECREF(result);
    if (stop != NULL) {
        PyErr_SetObject(PyExc_StopIteration, stop);
        Py_DECREF(stop);
    }
    return NULL;
}

static PyObject *
op_iternext(FlSockOp *op)
{
    PyObject *result;
    PySendResult r = op_am_send(op, Py_None, &result);
    if (r == PYGEN_RETURN && result == Py_None) {
        Py_DECREF(result);
        return NULL;            /* exhausted, no StopIteration needed */
    }
    return send_result(r, result);
}

static PyObject *
op_send(FlSockOp *op, PyObject *arg)
{
    PyObject *result;
    PySendResult r = op_am_send(op, arg, &result);
    return send_result(r, result);
}

static PyObject *
op_throw(FlSockOp *op, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 3) {
        PyErr_Format(PyExc_TypeError, "throw expected at least 1 argument, got %zd", nargs);
        return NULL;
    }
    if (op->state == ST_RUNNING) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return NULL;
    }
    PyObject *typ = args[0];
    PyObject *val = nargs > 1 && args[1] != Py_None ? args[1] : NULL;
    PyObject *tb = nargs > 2 && args[2] != Py_None ? args[2] : NULL;
    if (tb != NULL && !PyTraceBack_Check(tb)) {
        PyErr_SetString(PyExc_TypeError,
                        "throw() third argument must be a traceback object");
        return NULL;
    }
    op_abort(op);
    if (PyExceptionInstance_Check(typ)) {
        if (val != NULL) {
            PyErr_SetString(PyExc_TypeError,
                            "instance exception may not have a separate value");
            return NULL;
        }
        PyErr_SetObject((PyObject *)Py_TYPE(typ), typ);
    }
    else if (PyExceptionClass_Check(typ)) {
        if (val != NULL) {
            PyErr_SetObject(typ, val);
        }
        else {
            PyErr_SetNone(typ);
        }
    }
    else {
        PyErr_Format(PyExc_TypeError,
                     "exceptions must be classes or instances deriving from "
                     "BaseException, not %s", Py_TYPE(typ)->tp_name);
        return NULL;
    }
    if (tb != NULL) {
        PyObject *exc = fl_err_get_raised();
        PyException_SetTraceback(exc, tb);
        fl_err_set_raised(exc);
    }
    return NULL;
}

static PyObject *
op_close(FlSockOp *op, PyObject *Py_UNUSED(ignored))
{
    if (op->state == ST_RUNNING) {
        PyErr_SetString(PyExc_ValueError, "coroutine already executing");
        return NULL;
    }
    op_abort(op);
    Py_RETURN_NONE;
}

static PyObject *
op_await(FlSockOp *op)
{
    return Py_NewRef(op);
}

static PyObject *
op_get_name(FlSockOp *op, void *closure)
{
    return PyUnicode_FromString(kind_info[op->kind].name);
}

static PyObject *
op_get_qualname(FlSockOp *op, void *closure)
{
    return PyUnicode_FromFormat("Loop.%s", kind_info[op->kind].name);
}

static PyObject *
op_get_await(FlSockOp *op, void *closure)
{
    return Py_NewRef(op->state == ST_WAITING && op->fut ? op->fut : Py_None);
}

static PyObject *
op_get_running(FlSockOp *op, void *closure)
{
    return PyBool_FromLong(op->state == ST_RUNNING);
}

static PyObject *
op_get_none(FlSockOp *op, void *closure)
{
    Py_RETURN_NONE;
}

static PyObject *
op_repr(FlSockOp *op)
{
    static const char *states[] = {"created", "running", "waiting", "done"};
    return PyUnicode_FromFormat("<%s %s>", kind_info[op->kind].name,
                                states[op->state]);
}

static int
op_traverse(FlSockOp *op, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(op));
    Py_VISIT(op->loop);
    Py_VISIT(op->sock);
    Py_VISIT(op->a1);
    Py_VISIT(op->a2);
    Py_VISIT(op->fut);
    Py_VISIT(op->view_obj);
    return 0;
}

static int
op_clear(FlSockOp *op)
{
    /* Never called while watching: the self-reference keeps it alive. */
    op_release_data(op);
    Py_CLEAR(op->fut);
    Py_CLEAR(op->a1);
    Py_CLEAR(op->a2);
    Py_CLEAR(op->sock);
    return 0;
}

static void
op_dealloc(FlSockOp *op)
{
    PyTypeObject *tp = Py_TYPE(op);
    PyObject_GC_UnTrack(op);
    op_clear(op);
    Py_CLEAR(op->loop);
    tp->tp_free(op);
    Py_DECREF(tp);
}

static PyMethodDef op_methods[] = {
    {"send", (PyCFunction)op_send, METH_O, NULL},
    {"throw", (PyCFunction)(void (*)(void))op_throw, METH_FASTCALL, NULL},
    {"close", (PyCFunction)op_close, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef op_getset[] = {
    {"__name__", (getter)op_get_name, NULL, NULL, NULL},
    {"__qualname__", (getter)op_get_qualname, NULL, NULL, NULL},
    {"cr_await", (getter)op_get_await, NULL, NULL, NULL},
    {"cr_running", (getter)op_get_running, NULL, NULL, NULL},
    {"cr_frame", (getter)op_get_none, NULL, NULL, NULL},
    {"cr_code", (getter)op_get_none, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot op_slots[] = {
    {Py_am_await, op_await},
    {Py_am_send, op_am_send},
    {Py_tp_iternext, op_iternext},
    {Py_tp_dealloc, op_dealloc},
    {Py_tp_traverse, op_traverse},
    {Py_tp_clear, op_clear},
    {Py_tp_repr, op_repr},
    {Py_tp_methods, op_methods},
    {Py_tp_getset, op_getset},
    {Py_tp_doc, "The awaitable a loop.sock_*() method returns."},
    {0, NULL},
};

static PyType_Spec op_spec = {
    .name = "fastloop._core.SockOperation",
    .basicsize = sizeof(FlSockOp),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC
             | Py_TPFLAGS_DISALLOW_INSTANTIATION,
    .slots = op_slots,
};

/* ---- the loop methods ---- */

/* Binds positional and keyword arguments to `names` as a Python function
   with those parameters would; out[i] stays NULL for an absent optional. */
static int
bind_args(const char *fname, const char *const *names, int nreq, int nmax,
          PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames,
          PyObject **out)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    for (int i = 0; i < nmax; i++) {
        out[i] = NULL;
    }
    if (nargs > nmax) {
        PyErr_Format(PyExc_TypeError,
                     "%s() takes %d positional arguments but %zd were given",
                     fname, nmax + 1, nargs + 1);
        return -1;
    }
    for (Py_ssize_t i = 0; i < nargs; i++) {
        out[i] = args[i];
    }
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    for (Py_ssize_t k = 0; k < nkw; k++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, k);
        int idx = -1;
        for (int i = 0; i < nmax; i++) {
            if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                idx = i;
                break;
            }
        }
        if (idx < 0) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%U'", fname, key);
            return -1;
        }
        if (out[idx] != NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got multiple values for argument '%s'",
                         fname, names[idx]);
            return -1;
        }
        out[idx] = args[nargs + k];
    }
    for (int i = 0; i < nreq; i++) {
        if (out[i] == NULL) {
            PyErr_Format(PyExc_TypeError,
                         "%s() missing 1 required positional argument: '%s'",
                         fname, names[i]);
            return -1;
        }
    }
    return 0;
}

static FlSockOp *
op_new(FlLoop *loop, int kind, PyObject *sock, PyObject *a1, PyObject *a2)
{
    FlSockOp *op = PyObject_GC_New(FlSockOp, sockop_type);
    if (op == NULL) {
        return NULL;
    }
    memset((char *)op + sizeof(PyObject), 0, sizeof(FlSockOp) - sizeof(PyObject));
    op->loop = (FlLoop *)Py_NewRef(loop);
    op->sock = Py_NewRef(sock);
    op->a1 = Py_XNewRef(a1);
    op->a2 = Py_XNewRef(a2);
    op->kind = (unsigned char)kind;
    op->fd = -1;
    op->fileno = -1;
    PyObject_GC_Track(op);
    return op;
}

static PyObject *
make_op(FlLoop *loop, int kind, const char *const *names, int nreq, int nmax,
        PyObject *const *args, Py_ssize_t nargsf, PyObject *kwnames)
{
    PyObject *bound[3];
    if (bind_args(kind_info[kind].name, names, nreq, nmax, args, nargsf,
                  kwnames, bound) < 0) {
        return NULL;
    }
    return (PyObject *)op_new(loop, kind, bound[0], nmax > 1 ? bound[1] : NULL,
                              nmax > 2 ? bound[2] : NULL);
}

static PyObject *
loop_sock_recv(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
               PyObject *kwnames)
{
    static const char *const names[] = {"sock", "n"};
    return make_op(loop, K_RECV, names, 2, 2, args, nargsf, kwnames);
}

static PyObject *
loop_sock_recv_into(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                    PyObject *kwnames)
{
    static const char *const names[] = {"sock", "buf"};
    return make_op(loop, K_RECV_INTO, names, 2, 2, args, nargsf, kwnames);
}

static PyObject *
loop_sock_sendall(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                  PyObject *kwnames)
{
    static const char *const names[] = {"sock", "data"};
    return make_op(loop, K_SENDALL, names, 2, 2, args, nargsf, kwnames);
}

/* 3.11 added sock_recvfrom, sock_recvfrom_into and sock_sendto. */
static PyObject *
loop_sock_recvfrom(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                   PyObject *kwnames)
{
    static const char *const names[] = {"sock", "bufsize"};
    return make_op(loop, K_RECVFROM, names, 2, 2, args, nargsf, kwnames);
}

static PyObject *
loop_sock_recvfrom_into(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                        PyObject *kwnames)
{
    static const char *const names[] = {"sock", "buf", "nbytes"};
    PyObject *bound[3];
    if (bind_args("sock_recvfrom_into", names, 2, 3, args, nargsf, kwnames,
                  bound) < 0) {
        return NULL;
    }
    PyObject *zero = NULL;
    if (bound[2] == NULL) {
        zero = PyLong_FromLong(0);
        if (zero == NULL) {
            return NULL;
        }
    }
    PyObject *op = (PyObject *)op_new(loop, K_RECVFROM_INTO, bound[0], bound[1],
                                      bound[2] ? bound[2] : zero);
    Py_XDECREF(zero);
    return op;
}

static PyObject *
loop_sock_sendto(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                 PyObject *kwnames)
{
    static const char *const names[] = {"sock", "data", "address"};
    return make_op(loop, K_SENDTO, names, 3, 3, args, nargsf, kwnames);
}

static PyObject *
loop_sock_accept(FlLoop *loop, PyObject *const *args, Py_ssize_t nargsf,
                 PyObject *kwnames)
{
    static const char *const names[] = {"sock"};
    return make_op(loop, K_ACCEPT, names, 1, 1, args, nargsf, kwnames);
}

/* _sock_connect_op(sock, address): the connect() and the wait, once the
   Python side has checked the socket and resolved the address. */
static PyObject *
loop_sock_connect_op(FlLoop *loop, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 2) {
        PyErr_SetString(PyExc_TypeError, "_sock_connect_op(sock, address)");
        return NULL;
    }
    FlSockOp *op = op_new(loop, K_CONNECT, args[0], args[1], NULL);
    if (op != NULL) {
        op->checked = 1;
    }
    return (PyObject *)op;
}

/* _sock_sendfile_op(sock, fileno, offset, count, blocksize): os.sendfile()
   until done, once the Python side has checked the arguments; count 0 means
   up to the end of the file. */
static PyObject *
loop_sock_sendfile_op(FlLoop *loop, PyObject *args)
{
    PyObject *sock;
    int fileno;
    long long offset;
    Py_ssize_t count, blocksize;
    if (!PyArg_ParseTuple(args, "OiLnn:_sock_sendfile_op", &sock, &fileno,
                          &offset, &count, &blocksize)) {
        return NULL;
    }
    FlSockOp *op = op_new(loop, K_SENDFILE, sock, NULL, NULL);
    if (op == NULL) {
        return NULL;
    }
    op->checked = 1;
    op->fileno = fileno;
    op->offset = (off_t)offset;
    op->count = count;
    /* On 32-bit systems, at most 1 GiB a call, as asyncio. */
    op->blocksize = blocksize > PY_SSIZE_T_MAX / 2 + 1 ? PY_SSIZE_T_MAX / 2 + 1
                                                      : blocksize;
    return (PyObject *)op;
}

/* For tests: how many sock_* operations, on any loop, have a started
   watcher (0 once every one finished, was cancelled or its loop closed). */
static PyObject *
loop_sock_watching(FlLoop *loop, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromSsize_t(watching_ops);
}

#define FASTCALL_KW(f) (PyCFunction)(void (*)(void))(f), METH_FASTCALL | METH_KEYWORDS

PyMethodDef fl_sock_loop_methods[] = {
    {"sock_recv", FASTCALL_KW(loop_sock_recv),
     "Receive up to n bytes from sock (a coroutine)."},
    {"sock_recv_into", FASTCALL_KW(loop_sock_recv_into),
     "Receive data from sock into buf (a coroutine)."},
    {"sock_recvfrom", FASTCALL_KW(loop_sock_recvfrom),
     "Receive a datagram of up to bufsize bytes from sock (a coroutine)."},
    {"sock_recvfrom_into", FASTCALL_KW(loop_sock_recvfrom_into),
     "Receive a datagram from sock into buf (a coroutine)."},
    {"sock_sendto", FASTCALL_KW(loop_sock_sendto),
     "Send a datagram from sock to address (a coroutine)."},
    {"sock_sendall", FASTCALL_KW(loop_sock_sendall),
     "Send all of data to sock (a coroutine)."},
    {"sock_accept", FASTCALL_KW(loop_sock_accept),
     "Accept a connection on sock (a coroutine)."},
    {"_sock_connect_op", (PyCFunction)(void (*)(void))loop_sock_connect_op,
     METH_FASTCALL, NULL},
    {"_sock_sendfile_op", (PyCFunction)loop_sock_sendfile_op, METH_VARARGS, NULL},
    {"_sock_watching", (PyCFunction)loop_sock_watching, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* ---- module init ---- */

static int
intern(PyObject **slot, const char *s)
{
    *slot = PyUnicode_InternFromString(s);
    return *slot ? 0 : -1;
}

static PyTypeObject *
get_type(const char *module, const char *name)
{
    PyObject *mod = PyImport_ImportModule(module);
    if (mod == NULL) {
        return NULL;
    }
    PyObject *type = PyObject_GetAttrString(mod, name);
    Py_DECREF(mod);
    if (type != NULL && !PyType_Check(type)) {
        PyErr_Format(PyExc_ImportError, "%s.%s is not a type", module, name);
        Py_CLEAR(type);
    }
    return (PyTypeObject *)type;
}

int
fl_sock_module_init(PyObject *module)
{
    if (intern(&str_recv, "recv") < 0 || intern(&str_recv_into, "recv_into") < 0
            || intern(&str_recvfrom, "recvfrom") < 0
            || intern(&str_recvfrom_into, "recvfrom_into") < 0
            || intern(&str_send, "send") < 0 || intern(&str_sendto, "sendto") < 0
            || intern(&str_accept, "accept") < 0
            || intern(&str_connect, "connect") < 0
            || intern(&str_setblocking, "setblocking") < 0
            || intern(&str_fileno, "fileno") < 0
            || intern(&str_gettimeout, "gettimeout") < 0
            || intern(&str_getsockopt, "getsockopt") < 0) {
        return -1;
    }
    if (c_socket_type == NULL) {
        c_socket_type = get_type("_socket", "socket");
        py_socket_type = get_type("socket", "socket");
        if (c_socket_type == NULL || py_socket_type == NULL) {
            return -1;
        }
    }
    if (sendfile_unavailable == NULL) {
        PyObject *mod = PyImport_ImportModule("asyncio.exceptions");
        if (mod == NULL) {
            return -1;
        }
        sendfile_unavailable = PyObject_GetAttrString(mod, "SendfileNotAvailableError");
        Py_DECREF(mod);
        if (sendfile_unavailable == NULL) {
            return -1;
        }
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &op_spec, NULL);
    if (type == NULL) {
        return -1;
    }
    Py_XSETREF(sockop_type, (PyTypeObject *)type);
    /* Registered as a Coroutine for asyncio.iscoroutine(): the ABC's
       subclass hook would find send/throw/close/__await__ anyway, but this
       also covers code that checks before the first instance exists. */
    PyObject *abc = PyImport_ImportModule("collections.abc");
    if (abc == NULL) {
        return -1;
    }
    PyObject *coro = PyObject_GetAttrString(abc, "Coroutine");
    Py_DECREF(abc);
    if (coro == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallMethod(coro, "register", "O", type);
    Py_DECREF(coro);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}
