/* StreamTransport: a socket stream transport on two libev watchers.

   Per-event work stays in C: the read watcher receives into one buffer and
   calls the protocol straight away (data_received, or get_buffer and
   buffer_updated with no copy for a BufferedProtocol); write() tries the
   syscall at once and queues only what the kernel did not take; the write
   watcher flushes the queue with one sendmsg over many chunks.

   Semantics follow asyncio's _SelectorSocketTransport: connection_made runs
   soon after creation and reading starts after it; connection_lost runs
   exactly once, soon after close/abort/a fatal error, and only then is the
   socket closed (its watchers are stopped first: libev must never watch a
   closed fd). Protocol callbacks the loop runs (connection_made/lost, data,
   eof, resume_writing from a flush) run in the context copied when the
   transport was made; calls made from inside user calls (pause_writing from
   write()) run in the caller's context, as in asyncio.

   The same transport serves pipes, FIFOs, ptys and character devices
   (loop.connect_read_pipe/connect_write_pipe), as asyncio's
   _UnixReadPipeTransport and _UnixWritePipeTransport: `kind` says which.
   A pipe uses read()/write()/writev() on the plain fd where a socket uses
   recv()/send()/sendmsg(); the differences in semantics (EOF closes a read
   pipe; close() of a write pipe is write_eof(); a write pipe watches its fd
   for reading to learn that the reader went away) are the branches on
   `kind` below, each small and named. */
#include "transports/stream.h"
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>
#include "callbacks/handle.h"
#include "loop/fdowner.h"
#include "transports/transport.h"

#define READ_SIZE (256 * 1024)          /* asyncio's max_size */
#define MAX_IOV 64

enum {
    KIND_SOCKET = 0,
    KIND_READ_PIPE = 1,
    KIND_WRITE_PIPE = 2,
};

typedef struct {
    PyObject *obj;              /* a bytes object we own */
    const char *ptr;            /* the unsent part of it */
    Py_ssize_t len;
} wchunk;

typedef struct {
    fl_transport tr;            /* first: what every transport has. Its sock
                                   is the socket.socket, or the pipe object
                                   for a pipe; write_size the bytes queued */
    PyObject *server;
    PyObject *empty_waiter;     /* sendfile's "buffer drained" future */
    PyObject *registry;         /* the loop's set of live transports */
    wchunk *wq;                 /* write queue: wq[wq_head .. wq_head+wq_count) */
    Py_ssize_t wq_head, wq_count, wq_cap;
    char kind;                  /* KIND_SOCKET or a pipe */
    char watch_peer;            /* write pipe: rio tells the reader left */
    char pipe_sized;            /* pipe: grow_pipe_for_bulk() already ran */
    char direct_reads;          /* the last read was big: see read_into_bytes() */
    char buffered;              /* the protocol is a BufferedProtocol */
    char direct;                /* ... that takes its bytes in C (TLS) */
    char eof, made, lost;
} FlStream;

static Py_ssize_t stream_offset;
#define ST(o) ((FlStream *)((char *)(o) + stream_offset))

static PyTypeObject *stream_type;
static PyTypeObject *read_pipe_type;   /* see read_pipe_spec */
static PyObject *buffered_protocol_type;
static const fl_stream_direct_protocol *direct_protocol;   /* tls.c's */
static PyObject *transport_socket_type;

static PyObject *str_data_received, *str_get_buffer, *str_buffer_updated,
    *str_eof_received, *str_attach, *str_detach,
    *str_getsockname, *str_getpeername, *str_fl_transports;

/* Data received for a Protocol goes through here and is copied into a new
   bytes object before any Python code runs: the GIL makes one buffer safe
   for every loop of the process. */
static char read_buf[READ_SIZE];

/* ---- small helpers ---- */

/* protocol.<name>(arg) (arg NULL: no argument). The protocol is held for
   the call: a callback may replace it (set_protocol()), and a C method
   does not hold its own self. */
static PyObject *
call_protocol(FlStream *s, PyObject *name, PyObject *arg)
{
    PyObject *protocol = s->tr.protocol;
    if (protocol == NULL) {
        Py_RETURN_NONE;     /* connection_lost() already ran */
    }
    Py_INCREF(protocol);
    PyObject *r = arg ? fl_call_method1(protocol, name, arg)
                      : fl_call_method0(protocol, name);
    Py_DECREF(protocol);
    return r;
}

static PyObject *
errno_exception(int err)
{
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    return fl_err_get_raised();
}

/* ---- the syscalls: the socket-specific ones in one place ---- */

static const char *
read_error_message(FlStream *s)
{
    return s->kind == KIND_SOCKET ? "Fatal read error on socket transport"
                                  : "Fatal read error on pipe transport";
}

static const char *
write_error_message(FlStream *s)
{
    return s->kind == KIND_SOCKET ? "Fatal write error on socket transport"
                                  : "Fatal write error on pipe transport";
}

/* ---- pipe capacity ---- */

/* Linux pipes hold 64 KiB by default, so bulk data through a pipe (a child's
   stdin or stdout, say) costs a wakeup and two context switches per 64 KiB.
   Once a pipe shows it carries bulk data (a write that leaves a pipe's worth
   queued, or a read that drains a full default pipe) we ask the kernel for a
   bigger buffer, once per transport. The kernel refuses an unprivileged user
   past fs.pipe-user-pages-soft (EPERM), and then the pipe simply stays as it
   is; ptys and character devices refuse it too. Only ever grows a pipe. */
#define PIPE_DEFAULT_CAPACITY (64 * 1024)
#define PIPE_BULK_CAPACITY (1024 * 1024)

static void
grow_pipe_for_bulk(FlStream *s)
{
    s->pipe_sized = 1;
    if (!fl_transport_fd_ok(&s->tr)) {
        return;
    }
    int now = fcntl(s->tr.fd, F_GETPIPE_SZ);
    if (now >= 0 && now < PIPE_BULK_CAPACITY) {
        (void)fcntl(s->tr.fd, F_SETPIPE_SZ, PIPE_BULK_CAPACITY);
    }
}

/* Each syscall first makes sure the fd is still the socket's (or pipe's):
   closed behind the transport's back, its number may be someone else's. */
static ssize_t
io_read(FlStream *s, char *buf, size_t len)
{
    ssize_t n;
    if (!fl_transport_fd_ok(&s->tr)) {
        errno = EBADF;
        return -1;
    }
    do {
        n = s->kind == KIND_SOCKET ? recv(s->tr.fd, buf, len, 0)
                                   : read(s->tr.fd, buf, len);
    } while (n < 0 && errno == EINTR);
    if (n >= PIPE_DEFAULT_CAPACITY && s->kind == KIND_READ_PIPE && !s->pipe_sized) {
        grow_pipe_for_bulk(s);
    }
    return n;
}

/* MSG_NOSIGNAL keeps a socket from raising SIGPIPE; a pipe relies on
   Python ignoring SIGPIPE, as asyncio's os.write() does. */
static ssize_t
io_write(FlStream *s, const char *ptr, size_t len)
{
    ssize_t n;
    if (!fl_transport_fd_ok(&s->tr)) {
        errno = EBADF;
        return -1;
    }
    do {
        n = s->kind == KIND_SOCKET ? send(s->tr.fd, ptr, len, MSG_NOSIGNAL)
                                   : write(s->tr.fd, ptr, len);
    } while (n < 0 && errno == EINTR);
    return n;
}

/* ---- write queue ---- */

static void
wq_clear(FlStream *s)
{
    for (Py_ssize_t i = 0; i < s->wq_count; i++) {
        Py_DECREF(s->wq[s->wq_head + i].obj);
    }
    s->wq_head = s->wq_count = 0;
    s->tr.write_size = 0;
}

static int
wq_append(FlStream *s, PyObject *data, const char *ptr, Py_ssize_t len)
{
    if (s->kind == KIND_WRITE_PIPE && !s->pipe_sized
            && s->tr.write_size + len >= PIPE_DEFAULT_CAPACITY) {
        grow_pipe_for_bulk(s);
    }
    if (s->wq_head + s->wq_count == s->wq_cap) {
        if (s->wq_head > 0) {
            memmove(s->wq, s->wq + s->wq_head, s->wq_count * sizeof(wchunk));
            s->wq_head = 0;
        }
        else {
            Py_ssize_t cap = s->wq_cap ? s->wq_cap * 2 : 8;
            wchunk *wq = PyMem_Realloc(s->wq, cap * sizeof(wchunk));
            if (wq == NULL) {
                PyErr_NoMemory();
                return -1;
            }
            s->wq = wq;
            s->wq_cap = cap;
        }
    }
    /* bytes are immutable: keep them. Anything else may change after
       write() returns, so asyncio copies it, and so do we. */
    PyObject *obj;
    if (PyBytes_CheckExact(data)) {
        obj = Py_NewRef(data);
    }
    else {
        obj = PyBytes_FromStringAndSize(ptr, len);
        if (obj == NULL) {
            return -1;
        }
        ptr = PyBytes_AS_STRING(obj);
    }
    wchunk *c = &s->wq[s->wq_head + s->wq_count++];
    c->obj = obj;
    c->ptr = ptr;
    c->len = len;
    s->tr.write_size += len;
    return 0;
}

static void
wq_consume(FlStream *s, Py_ssize_t n)
{
    s->tr.write_size -= n;
    while (n > 0 && s->wq_count > 0) {
        wchunk *c = &s->wq[s->wq_head];
        if (n < c->len) {
            c->ptr += n;
            c->len -= n;
            return;
        }
        n -= c->len;
        Py_DECREF(c->obj);
        s->wq_head++;
        s->wq_count--;
    }
    if (s->wq_count == 0) {
        s->wq_head = 0;
    }
}

/* sendmsg (writev for a pipe) over up to MAX_IOV queued chunks; bytes
   sent, or -1 with errno. */
static ssize_t
wq_send(FlStream *s)
{
    struct iovec iov[MAX_IOV];
    int n = 0;
    for (Py_ssize_t i = 0; i < s->wq_count && n < MAX_IOV; i++, n++) {
        wchunk *c = &s->wq[s->wq_head + i];
        iov[n].iov_base = (void *)c->ptr;
        iov[n].iov_len = (size_t)c->len;
    }
    ssize_t r;
    if (!fl_transport_fd_ok(&s->tr)) {
        errno = EBADF;
        return -1;
    }
    if (s->kind != KIND_SOCKET) {
        do {
            r = writev(s->tr.fd, iov, n);
        } while (r < 0 && errno == EINTR);
        return r;
    }
    struct msghdr msg = {0};
    msg.msg_iov = iov;
    msg.msg_iovlen = n;
    do {
        r = sendmsg(s->tr.fd, &msg, MSG_NOSIGNAL);
    } while (r < 0 && errno == EINTR);
    return r;
}

/* shutdown(SHUT_WR): -1 with errno. */
static int
io_shutdown_write(FlStream *s)
{
    if (!fl_transport_fd_ok(&s->tr)) {
        errno = EBADF;
        return -1;
    }
    return shutdown(s->tr.fd, SHUT_WR);
}

/* ---- closing ---- */

static void
clear_write_buffer(PyObject *self)
{
    wq_clear(ST(self));
}

/* asyncio's _fatal_error: report (OSErrors only in debug mode) and abort.
   Returns -1 only for errors that must stop the loop. */
static int
fatal_error(PyObject *self, PyObject *exc, const char *message)
{
    FlStream *s = ST(self);
    if (s->kind != KIND_READ_PIPE) {
        return fl_transport_fatal_error(self, exc, message);
    }
    /* A read pipe reports every OSError but EIO (a pty whose other side
       closed). */
    if (fl_transport_call_helper("_report_read_pipe_fatal_error", Py_BuildValue(
            "(OOOsO)", (PyObject *)s->tr.loop, self,
            s->tr.protocol ? s->tr.protocol : Py_None, message, exc)) < 0) {
        return -1;
    }
    return fl_transport_force_close(self, exc);
}

/* The end of a transport: connection_lost(exc) once, then the socket. */
static int
call_connection_lost(PyObject *self, PyObject *exc)
{
    FlStream *s = ST(self);
    int rc = 0;
    if (s->lost) {
        return 0;
    }
    s->lost = 1;
    if (s->tr.protocol != NULL) {
        PyObject *r = call_protocol(s, fl_str_connection_lost, exc);
        if (r != NULL) {
            Py_DECREF(r);
        }
        else {
            rc = fl_transport_callback_failed(
                self, "Exception in callback transport._call_connection_lost()");
        }
    }
    /* Keep a fatal error while we release the rest. */
    PyObject *pending = PyErr_Occurred() ? fl_err_get_raised() : NULL;
    wq_clear(s);
    if (fl_transport_close_sock(self) < 0) {
        PyErr_WriteUnraisable(self);
    }
    s->tr.fd = -1;
    Py_CLEAR(s->tr.protocol);
    PyObject *server = s->server;
    s->server = NULL;
    if (server != NULL) {
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *r = fl_call_method1(server, str_detach, self);
#else
        PyObject *r = fl_call_method0(server, str_detach);
#endif
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_WriteUnraisable(server);
        }
        Py_DECREF(server);
    }
    if (s->registry != NULL) {
        if (PySet_Discard(s->registry, self) < 0) {
            PyErr_WriteUnraisable(self);
        }
        Py_CLEAR(s->registry);
    }
    if (s->empty_waiter != NULL && s->empty_waiter != Py_None) {
        PyObject *r = PyObject_CallMethod(
            s->empty_waiter, "set_exception", "N",
            PyObject_CallFunction(PyExc_ConnectionError, "s",
                                  "Connection is closed by peer"));
        Py_XDECREF(r);
        if (r == NULL) {
            PyErr_WriteUnraisable(self);
        }
    }
    if (pending != NULL) {
        fl_err_set_raised(pending);
    }
    return rc;
}

static int
lost_entry(FlLoop *loop, fl_ready_item *item)
{
    return fl_transport_call_in_context(item->arg, ST(item->arg)->tr.context,
                                        call_connection_lost, item->callback);
}

/* ---- reading ---- */

/* EOF on a read pipe ends it, as _UnixReadPipeTransport does: it stops
   reading and schedules eof_received() (its result does not matter), then
   connection_lost(None). Like asyncio's call_soon, eof_received runs from a
   Handle, in the transport's context, on the next pass of the loop. */
static int
on_pipe_eof(PyObject *self)
{
    FlStream *s = ST(self);
    if (s->tr.loop->debug && fl_transport_call_helper("_log_debug", Py_BuildValue(
            "(sO)", "%r was closed by peer", self)) < 0) {
        return -1;
    }
    s->tr.closing = 1;
    fl_transport_watch_stop(&s->tr, &s->tr.rio);
    PyObject *eof_received = PyObject_GetAttr(s->tr.protocol, str_eof_received);
    if (eof_received == NULL) {
        return -1;
    }
    PyObject *handle = fl_handle_schedule(s->tr.loop, FL_HANDLE_PLAIN,
                                          &eof_received, 1, s->tr.context);
    Py_DECREF(eof_received);
    if (handle == NULL) {
        return -1;
    }
    Py_DECREF(handle);
    return fl_transport_schedule_connection_lost(self, NULL);
}

static int
on_eof(PyObject *self)
{
    FlStream *s = ST(self);
    if (s->kind != KIND_SOCKET) {
        return on_pipe_eof(self);
    }
    if (s->tr.loop->debug && fl_transport_call_helper("_log_debug", Py_BuildValue(
            "(sO)", "%r received EOF", self)) < 0) {
        return -1;
    }
    PyObject *r = call_protocol(s, str_eof_received, NULL);
    if (r == NULL) {
        PyObject *exc = fl_err_take_nonfatal();
        if (exc == NULL) {
            return -1;
        }
        int rc = fatal_error(self, exc,
                             "Fatal error: protocol.eof_received() call failed.");
        Py_DECREF(exc);
        return rc;
    }
    int keep_open = PyObject_IsTrue(r);
    Py_DECREF(r);
    if (keep_open < 0) {
        return -1;
    }
    if (keep_open) {
        /* The protocol may still write; there is nothing more to read. */
        fl_transport_watch_stop(&s->tr, &s->tr.rio);
        return 0;
    }
    if (!s->tr.closing) {
        s->tr.closing = 1;
        fl_transport_watch_stop(&s->tr, &s->tr.rio);
        if (s->tr.write_size == 0) {
            s->tr.conn_lost++;
            fl_transport_watch_stop(&s->tr, &s->tr.wio);
            return fl_transport_schedule_connection_lost(self, NULL);
        }
    }
    return 0;
}

/* Reports a failed recv() or protocol call: -1 only for fatal errors. */
static int
read_failed(PyObject *self, const char *message)
{
    PyObject *exc = fl_err_take_nonfatal();
    if (exc == NULL) {
        return -1;
    }
    int rc = fatal_error(self, exc, message);
    Py_DECREF(exc);
    return rc;
}

/* A protocol's data callback failed. A socket transport aborts; a read
   pipe, like asyncio's, reports it as a failed callback and reads on. */
static int
protocol_failed(PyObject *self, const char *message)
{
    if (ST(self)->kind == KIND_SOCKET) {
        return read_failed(self, message);
    }
    return fl_transport_callback_failed(self, message);
}

/* One read for a Protocol: the bytes object handed to data_received().
   Small reads land in read_buf and are copied out. Once reads run large
   (bulk transfer), FIONREAD tells how much is waiting and the read goes
   straight into a bytes object of that size: a syscall costs less than
   copying tens of KiB again. (A bigger guess trimmed afterwards would make
   glibc mmap and munmap every buffer past its 128 KiB threshold.)
   Returns NULL with *n set (0 for EOF, -1 with errno) when there is no data;
   NULL with *n 1 means a Python error. */
#define DIRECT_READ_THRESHOLD (4 * 1024)

static PyObject *
read_into_bytes(FlStream *s, ssize_t *n)
{
    int waiting = 0;
    if (!s->direct_reads || ioctl(s->tr.fd, FIONREAD, &waiting) < 0
            || waiting < DIRECT_READ_THRESHOLD) {
        *n = io_read(s, read_buf, sizeof(read_buf));
        if (*n <= 0) {
            return NULL;
        }
        s->direct_reads = *n >= DIRECT_READ_THRESHOLD;
        PyObject *data = PyBytes_FromStringAndSize(read_buf, *n);
        if (data == NULL) {
            *n = 1;
        }
        return data;
    }
    Py_ssize_t size = waiting < READ_SIZE ? waiting : READ_SIZE;
    PyObject *data = PyBytes_FromStringAndSize(NULL, size);
    if (data == NULL) {
        *n = 1;
        return NULL;
    }
    *n = io_read(s, PyBytes_AS_STRING(data), (size_t)size);
    if (*n <= 0) {
        int saved = errno;
        Py_DECREF(data);
        errno = saved;
        return NULL;
    }
    if (*n < size && _PyBytes_Resize(&data, *n) < 0) {
        *n = 1;
        return NULL;
    }
    return data;
}

static int
read_data(PyObject *self)
{
    FlStream *s = ST(self);
    ssize_t n;
    PyObject *data = read_into_bytes(s, &n);
    if (data == NULL) {
        if (n > 0) {
            return read_failed(self, read_error_message(s));
        }
        if (n == 0) {
            return on_eof(self);
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        PyObject *exc = errno_exception(errno);
        int rc = fatal_error(self, exc, read_error_message(s));
        Py_DECREF(exc);
        return rc;
    }
    PyObject *r = call_protocol(s, str_data_received, data);
    Py_DECREF(data);
    if (r == NULL) {
        return protocol_failed(self, "Fatal error: protocol.data_received() call failed.");
    }
    Py_DECREF(r);
    return 0;
}

static int
read_buffered(PyObject *self)
{
    FlStream *s = ST(self);
    static PyObject *minus_one;
    if (minus_one == NULL && (minus_one = PyLong_FromLong(-1)) == NULL) {
        return -1;
    }
    PyObject *buf = call_protocol(s, str_get_buffer, minus_one);
    Py_buffer view;
    if (buf == NULL) {
        return read_failed(self, "Fatal error: protocol.get_buffer() call failed.");
    }
    int r = PyObject_GetBuffer(buf, &view, PyBUF_WRITABLE);
    Py_DECREF(buf);
    if (r < 0) {
        return read_failed(self, "Fatal error: protocol.get_buffer() call failed.");
    }
    if (view.len == 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_RuntimeError, "get_buffer() returned an empty buffer");
        return read_failed(self, "Fatal error: protocol.get_buffer() call failed.");
    }
    ssize_t n = io_read(s, view.buf, (size_t)view.len);
    int err = errno;
    PyBuffer_Release(&view);
    if (n < 0) {
        if (err == EAGAIN || err == EWOULDBLOCK) {
            return 0;
        }
        PyObject *exc = errno_exception(err);
        int rc = fatal_error(self, exc, read_error_message(s));
        Py_DECREF(exc);
        return rc;
    }
    if (n == 0) {
        return on_eof(self);
    }
    PyObject *nbytes = PyLong_FromSsize_t(n);
    if (nbytes == NULL) {
        return -1;
    }
    PyObject *res = call_protocol(s, str_buffer_updated, nbytes);
    Py_DECREF(nbytes);
    if (res == NULL) {
        return protocol_failed(self, "Fatal error: protocol.buffer_updated() call failed.");
    }
    Py_DECREF(res);
    return 0;
}

/* What each of the transport's libev callbacks does: counts the event and,
   unless an earlier callback failed (the run loop raises that error),
   runs fn(transport) in the transport's context. */
static void
run_in_context(ev_io *w, int (*fn)(PyObject *, PyObject *))
{
    PyObject *self = w->data;
    FlStream *s = ST(self);
    FlLoop *loop = s->tr.loop;
    loop->io_events++;
    if (PyErr_Occurred()) {
        return;
    }
    Py_INCREF(self);
    Py_INCREF(loop);
    if (fl_transport_call_in_context(self, s->tr.context, fn, NULL) < 0) {
        fl_err_stash_fatal(loop);
    }
    Py_DECREF(loop);
    Py_DECREF(self);
}

/* libev's EV_ERROR: it could not watch the fd (closed under us, or
   epoll_ctl refused it: ENOSPC at fs.epoll.max_user_watches, ENOMEM) and
   stopped the transport's watchers. A stall would be silent: fail. */
static int
watch_failed(PyObject *self, const char *message)
{
    FlStream *s = ST(self);
    if (s->tr.conn_lost || s->lost) {
        return 0;
    }
    PyObject *exc = errno_exception(fl_fd_watch_errno(s->tr.fd));
    if (exc == NULL) {
        return -1;
    }
    int rc = fatal_error(self, exc, message);
    Py_DECREF(exc);
    return rc;
}

static int
do_read_watch_failed(PyObject *self, PyObject *Py_UNUSED(arg))
{
    return watch_failed(self, read_error_message(ST(self)));
}

/* A BufferedProtocol that takes its bytes in C (fl_stream_direct_protocol):
   read_buffered() without the two Python calls, get_buffer() and
   buffer_updated(); errors are reported as theirs would be. */
static int
read_direct(PyObject *self)
{
    FlStream *s = ST(self);
    PyObject *protocol = Py_NewRef(s->tr.protocol);
    Py_ssize_t len;
    int rc = 0;
    char *buf = direct_protocol->get_buffer(protocol, &len);
    if (buf == NULL) {
        rc = read_failed(self, "Fatal error: protocol.get_buffer() call failed.");
        goto done;
    }
    ssize_t n = io_read(s, buf, (size_t)len);
    if (n < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            PyObject *exc = errno_exception(errno);
            rc = fatal_error(self, exc, read_error_message(s));
            Py_DECREF(exc);
        }
        goto done;
    }
    if (n == 0) {
        rc = on_eof(self);
        goto done;
    }
    if (direct_protocol->buffer_updated(protocol, n) < 0) {
        rc = protocol_failed(self, "Fatal error: protocol.buffer_updated() call failed.");
    }
done:
    Py_DECREF(protocol);
    return rc;
}

static int
do_read(PyObject *self, PyObject *Py_UNUSED(arg))
{
    FlStream *s = ST(self);
    if (s->tr.conn_lost || s->tr.protocol == NULL) {
        return 0;
    }
    if (s->direct) {
        return read_direct(self);
    }
    return s->buffered ? read_buffered(self) : read_data(self);
}

static void
read_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    run_in_context(w, (revents & EV_ERROR) ? do_read_watch_failed : do_read);
}

/* A write pipe's fd turns readable (EPOLLERR/EPOLLHUP) when the reading
   end is closed: abort, with BrokenPipeError if data was still queued. */
static int
do_peer_closed(PyObject *self, PyObject *Py_UNUSED(arg))
{
    FlStream *s = ST(self);
    if (s->tr.conn_lost || s->lost) {
        fl_transport_watch_stop(&s->tr, &s->tr.rio);
        return 0;
    }
    if (s->tr.loop->debug && fl_transport_call_helper("_log_debug", Py_BuildValue(
            "(sO)", "%r was closed by peer", self)) < 0) {
        return -1;
    }
    if (s->tr.write_size == 0) {
        return fl_transport_force_close(self, NULL);
    }
    PyObject *exc = PyObject_CallNoArgs(PyExc_BrokenPipeError);
    if (exc == NULL) {
        return -1;
    }
    int rc = fl_transport_force_close(self, exc);
    Py_DECREF(exc);
    return rc;
}

static void
peer_closed_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    run_in_context(w, (revents & EV_ERROR) ? do_read_watch_failed : do_peer_closed);
}

/* ---- writing ---- */

/* The queued data cannot be sent (errno err): asyncio's _write_ready
   error path. */
static int
write_failed(PyObject *self, int err)
{
    FlStream *s = ST(self);
    PyObject *exc = errno_exception(err);
    if (exc == NULL) {
        return -1;
    }
    fl_transport_watch_stop(&s->tr, &s->tr.wio);
    wq_clear(s);
    int rc = fatal_error(self, exc, write_error_message(s));
    if (rc == 0 && s->empty_waiter != NULL && s->empty_waiter != Py_None) {
        PyObject *r = PyObject_CallMethod(s->empty_waiter, "set_exception",
                                          "O", exc);
        Py_XDECREF(r);
        rc = r ? 0 : -1;
    }
    Py_DECREF(exc);
    return rc;
}

static int
do_write_watch_failed(PyObject *self, PyObject *Py_UNUSED(arg))
{
    FlStream *s = ST(self);
    if (s->tr.conn_lost || s->lost) {
        return 0;
    }
    return write_failed(self, fl_fd_watch_errno(s->tr.fd));
}

static int
do_write_ready(PyObject *self, PyObject *Py_UNUSED(arg))
{
    FlStream *s = ST(self);
    if (s->tr.conn_lost || s->tr.write_size == 0) {
        fl_transport_watch_stop(&s->tr, &s->tr.wio);
        return 0;
    }
    ssize_t n = wq_send(s);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return 0;
        }
        return write_failed(self, errno);
    }
    wq_consume(s, n);
    if (fl_transport_maybe_resume_protocol(self, &s->tr) < 0) {      /* may write more */
        return -1;
    }
    if (s->tr.write_size == 0) {
        fl_transport_watch_stop(&s->tr, &s->tr.wio);
        if (s->empty_waiter != NULL && s->empty_waiter != Py_None) {
            PyObject *r = PyObject_CallMethod(s->empty_waiter, "set_result",
                                              "O", Py_None);
            if (r == NULL) {
                return -1;
            }
            Py_DECREF(r);
        }
        if (s->tr.closing) {
            return call_connection_lost(self, Py_None);
        }
        if (s->eof && io_shutdown_write(s) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            return read_failed(self, write_error_message(s));
        }
    }
    return 0;
}

static void
write_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    run_in_context(w, (revents & EV_ERROR) ? do_write_watch_failed : do_write_ready);
}

/* ---- creation ---- */

/* Once connection_made() ran (fl_transport_schedule_made): reading starts
   only after it. */
static int
start_reading(PyObject *self)
{
    FlStream *s = ST(self);
    s->made = 1;
    if (!s->tr.closing && !s->tr.paused && !s->lost
            && (s->kind != KIND_WRITE_PIPE || s->watch_peer)) {
        fl_transport_watch_start(&s->tr, &s->tr.rio);
    }
    return 0;
}

static const fl_transport_impl stream_impl = {
    .clear_write_buffer = clear_write_buffer,
    .lost_entry = lost_entry,
    .fatal_error = fatal_error,
    .start_reading = start_reading,
};

static int
set_protocol(PyObject *self, PyObject *protocol)
{
    FlStream *s = ST(self);
    int buffered = PyObject_IsInstance(protocol, buffered_protocol_type);
    if (buffered < 0) {
        return -1;
    }
    int direct = buffered && direct_protocol != NULL
        ? direct_protocol->accepts(protocol) : 0;
    if (direct < 0) {
        return -1;
    }
    s->buffered = (char)buffered;
    s->direct = (char)direct;
    Py_XSETREF(s->tr.protocol, Py_NewRef(protocol));
    return 0;
}

static void
set_nodelay(int fd)
{
    int domain, type, proto, one = 1;
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0
            || (domain != AF_INET && domain != AF_INET6)) {
        return;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
        return;
    }
    len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) < 0
            || proto != IPPROTO_TCP) {
        return;
    }
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int
fill_extra(PyObject *extra, PyObject *sock)
{
    PyObject *tsock = PyObject_CallOneArg(transport_socket_type, sock);
    if (tsock == NULL) {
        return -1;
    }
    int r = PyDict_SetItemString(extra, "socket", tsock);
    Py_DECREF(tsock);
    if (r < 0) {
        return -1;
    }
    static const char *names[2] = {"sockname", "peername"};
    PyObject *meths[2] = {str_getsockname, str_getpeername};
    for (int i = 0; i < 2; i++) {
        PyObject *key = PyUnicode_InternFromString(names[i]);
        if (key == NULL) {
            return -1;
        }
        int has = PyDict_Contains(extra, key);
        if (has < 0 || (i == 1 && has)) {
            Py_DECREF(key);
            if (has < 0) {
                return -1;
            }
            continue;
        }
        PyObject *v = fl_call_method0(sock, meths[i]);
        if (v == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_OSError)) {
                Py_DECREF(key);
                return -1;
            }
            PyErr_Clear();
            v = Py_NewRef(Py_None);
        }
        r = PyDict_SetItem(extra, key, v);
        Py_DECREF(v);
        Py_DECREF(key);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

/* A new transport for a connected socket, or for a pipe if `kind` says
   so (the caller checked its mode and made it non-blocking). `context`
   NULL copies the current one. */
static PyObject *
stream_create(FlLoop *loop, PyObject *sock, PyObject *protocol,
              PyObject *waiter, PyObject *extra, PyObject *server,
              PyObject *context, int kind)
{
    if (fl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    int fd = fl_transport_sock_fd(sock);
    if (fd < 0) {
        return NULL;
    }
    if (kind == KIND_SOCKET && fl_transport_check_fd_free(loop, fd, sock) < 0) {
        return NULL;
    }
    PyTypeObject *tp = kind == KIND_READ_PIPE ? read_pipe_type : stream_type;
    PyObject *self = tp->tp_alloc(tp, 0);
    if (self == NULL) {
        return NULL;
    }
    FlStream *s = ST(self);
    s->kind = (char)kind;
    fl_transport_init(self, FL_TRANSPORT_STREAM, loop, fd,
                      kind == KIND_WRITE_PIPE ? peer_closed_cb : read_cb, write_cb);
    if (kind == KIND_WRITE_PIPE) {
        /* Only a FIFO or a socket reports the reader's close as readable
           (asyncio: "the reader trick"); a character device may really
           have data to read. */
        struct stat st;
        s->watch_peer = fstat(fd, &st) == 0
            && (S_ISFIFO(st.st_mode) || S_ISSOCK(st.st_mode));
    }
    s->tr.context = context ? Py_NewRef(context) : PyContext_CopyCurrent();
    if (s->tr.context == NULL) {
        goto error;
    }
    s->tr.sock = Py_NewRef(sock);
    s->tr.extra = (extra != NULL && extra != Py_None) ? Py_NewRef(extra) : PyDict_New();
    if (s->tr.extra == NULL || !PyDict_Check(s->tr.extra)) {
        if (s->tr.extra != NULL) {
            PyErr_SetString(PyExc_TypeError, "extra must be a dict");
        }
        goto error;
    }
    if (kind == KIND_SOCKET) {
        if (fill_extra(s->tr.extra, sock) < 0) {
            goto error;
        }
        set_nodelay(fd);
    }
    else if (PyDict_SetItemString(s->tr.extra, "pipe", sock) < 0) {
        goto error;
    }
    if (set_protocol(self, protocol) < 0) {
        goto error;
    }
    s->registry = PyObject_GetAttr((PyObject *)loop, str_fl_transports);
    if (s->registry == NULL || PySet_Add(s->registry, self) < 0) {
        goto error;
    }
    /* After the Python code above: is fd still the socket's? */
    if (fl_transport_bind_fd(&s->tr) < 0 || fl_fdowner_add(loop, fd, self) < 0) {
        goto error;
    }
    if (server != NULL && server != Py_None) {
        s->server = Py_NewRef(server);
#if PY_VERSION_HEX >= 0x030D0000
        PyObject *r = fl_call_method1(server, str_attach, self);
#else
        PyObject *r = fl_call_method0(server, str_attach);
#endif
        if (r == NULL) {
            Py_CLEAR(s->server);
            goto error;
        }
        Py_DECREF(r);
    }
    if (waiter != NULL && waiter != Py_None) {
        s->tr.waiter = Py_NewRef(waiter);
    }
    if (fl_transport_schedule_made(self) < 0) {
        goto error;
    }
    return self;
error:
    /* Nothing watches the fd yet; the socket stays the caller's. */
    fl_fdowner_discard(loop, fd, self);
    if (s->registry != NULL) {
        PySet_Discard(s->registry, self);
        Py_CLEAR(s->registry);
    }
    Py_CLEAR(s->tr.sock);
    Py_DECREF(self);
    return NULL;
}

PyObject *
fl_stream_new_socket(FlLoop *loop, PyObject *sock, PyObject *protocol,
                     PyObject *extra, PyObject *server, PyObject *context)
{
    return stream_create(loop, sock, protocol, NULL, extra, server, context,
                         KIND_SOCKET);
}

/* ---- what the layers above use ---- */

static PyObject *stream_write(PyObject *self, PyObject *data);

void
fl_stream_register_direct(const fl_stream_direct_protocol *impl)
{
    direct_protocol = impl;
}

int
fl_stream_check_exact(PyObject *obj)
{
    return Py_IS_TYPE(obj, stream_type);
}

PyObject *
fl_stream_write(PyObject *self, PyObject *data)
{
    return stream_write(self, data);
}

/* ---- Python-visible methods ---- */

static PyObject *
stream_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "waiter", "extra",
                             "server", "pipe", NULL};
    PyObject *loop, *sock, *protocol, *waiter = Py_None, *extra = Py_None,
             *server = Py_None;
    int kind = KIND_SOCKET;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|OOO$i:StreamTransport",
                                     kwlist, &loop, &sock, &protocol, &waiter,
                                     &extra, &server, &kind)) {
        return NULL;
    }
    if (kind < KIND_SOCKET || kind > KIND_WRITE_PIPE) {
        PyErr_SetString(PyExc_ValueError, "pipe must be 0, 1 (read) or 2 (write)");
        return NULL;
    }
    if ((type == read_pipe_type) != (kind == KIND_READ_PIPE)) {
        PyErr_SetString(PyExc_ValueError, "a read pipe is a ReadPipeTransport, "
                        "and a ReadPipeTransport is a read pipe (pipe=1)");
        return NULL;
    }
    if (fl_loop_from_arg(type, loop) == NULL) {
        return NULL;
    }
    return stream_create((FlLoop *)loop, sock, protocol, waiter, extra,
                         server, NULL, kind);
}

static int
stream_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    return 0;   /* everything happened in tp_new; skip asyncio's __init__ */
}

static PyObject *
write_dropped(PyObject *self)
{
    if (fl_transport_write_dropped(self, ST(self)->kind == KIND_SOCKET
            ? "socket.send() raised exception."
            : "pipe closed by peer or os.write(pipe, data) raised exception.") < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* A read pipe has no write side at all: it is a ReadPipeTransport, whose
   type has no writing methods. A write pipe has the read side's methods
   (asyncio's inherits them from ReadTransport), which refuse: */
static int
check_not_write_pipe(FlStream *s, const char *what)
{
    if (s->kind == KIND_WRITE_PIPE) {
        PyErr_Format(PyExc_NotImplementedError,
                     "%s() is not supported by a write pipe transport", what);
        return -1;
    }
    return 0;
}

/* Writes after close() or a lost connection are counted and dropped: for
   a socket only after the connection is lost, for a pipe also once
   closing (a pipe's write_eof() is its close()). */
static int
writes_dropped(FlStream *s)
{
    return s->tr.conn_lost || (s->kind != KIND_SOCKET && s->tr.closing);
}

static int
check_writable(FlStream *s, const char *what)
{
    if (s->eof) {
        PyErr_Format(PyExc_RuntimeError, "Cannot call %s() after write_eof()", what);
        return -1;
    }
    if (s->empty_waiter != NULL && s->empty_waiter != Py_None) {
        PyErr_Format(PyExc_RuntimeError, "unable to %s; sendfile is in progress",
                     what);
        return -1;
    }
    return 0;
}

static PyObject *
stream_write(PyObject *self, PyObject *data)
{
    FlStream *s = ST(self);
    if (!PyBytes_Check(data) && !PyByteArray_Check(data) && !PyMemoryView_Check(data)) {
        PyErr_Format(PyExc_TypeError, "data argument must be a %s, not '%.200s'",
                     FL_WRITE_TYPES_WORDING, Py_TYPE(data)->tp_name);
        return NULL;
    }
    if (check_writable(s, "write") < 0) {
        return NULL;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        return NULL;
    }
    PyObject *ret = NULL;
    /* A subclass's __buffer__ (3.12+) is Python code: check again. */
    if (!PyBytes_CheckExact(data) && check_writable(s, "write") < 0) {
        goto done;
    }
    if (view.len == 0) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (writes_dropped(s)) {
        ret = write_dropped(self);
        goto done;
    }
    const char *ptr = view.buf;
    Py_ssize_t len = view.len;
    if (s->tr.write_size == 0) {
        /* Try to send now: most writes never touch the queue. */
        ssize_t n = io_write(s, ptr, (size_t)len);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                PyObject *exc = errno_exception(errno);
                int rc = fatal_error(self, exc, write_error_message(s));
                Py_DECREF(exc);
                ret = rc < 0 ? NULL : Py_NewRef(Py_None);
                goto done;
            }
            n = 0;
        }
        if (n == len) {
            ret = Py_NewRef(Py_None);
            goto done;
        }
        ptr += n;
        len -= n;
        fl_transport_watch_start(&s->tr, &s->tr.wio);
    }
    if (wq_append(s, data, ptr, len) < 0
            || fl_transport_maybe_pause_protocol(self, &s->tr) < 0) {
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&view);
    return ret;
}

/* What writelines() sends: every item's bytes, taken (and copied unless
   bytes) before any of it is queued, since taking them may run Python code
   (a buffer's __buffer__, 3.12+) that changes the list or the transport. */
typedef struct {
    wchunk *chunks;
    Py_ssize_t n;
    Py_ssize_t total;
} wbatch;

static void
wbatch_free(wbatch *b)
{
    for (Py_ssize_t i = 0; i < b->n; i++) {
        Py_DECREF(b->chunks[i].obj);
    }
    PyMem_Free(b->chunks);
}

/* 0, or -1 with the error of the item that failed. */
static int
wbatch_collect(wbatch *b, PyObject *seq)
{
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    b->chunks = PyMem_New(wchunk, n ? n : 1);
    if (b->chunks == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        /* seq is a tuple or a list only we hold: its items stay put. */
        PyObject *d = PySequence_Fast_GET_ITEM(seq, i);
        Py_buffer view;
        if (PyObject_GetBuffer(d, &view, PyBUF_SIMPLE) < 0) {
            return -1;
        }
        PyObject *obj = NULL;
        if (view.len > 0) {
            obj = PyBytes_CheckExact(d) ? Py_NewRef(d)
                : PyBytes_FromStringAndSize(view.buf, view.len);
        }
        Py_ssize_t len = view.len;
        PyBuffer_Release(&view);
        if (len == 0) {
            continue;
        }
        if (obj == NULL) {
            return -1;
        }
        wchunk *c = &b->chunks[b->n++];
        c->obj = obj;
        c->ptr = PyBytes_AS_STRING(obj);
        c->len = PyBytes_GET_SIZE(obj);
        b->total += c->len;
    }
    return 0;
}

/* Room for n more chunks in the write queue, so that appending them cannot
   fail halfway. */
static int
wq_reserve(FlStream *s, Py_ssize_t n)
{
    if (s->wq_head + s->wq_count + n <= s->wq_cap) {
        return 0;
    }
    if (s->wq_head > 0) {
        memmove(s->wq, s->wq + s->wq_head, s->wq_count * sizeof(wchunk));
        s->wq_head = 0;
        if (s->wq_count + n <= s->wq_cap) {
            return 0;
        }
    }
    Py_ssize_t cap = s->wq_cap ? s->wq_cap : 8;
    while (cap < s->wq_count + n) {
        cap *= 2;
    }
    wchunk *wq = PyMem_Realloc(s->wq, cap * sizeof(wchunk));
    if (wq == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    s->wq = wq;
    s->wq_cap = cap;
    return 0;
}

/* An item whose bytes could not be taken. 3.12+'s asyncio takes a
   memoryview of each and only sendmsg() then fails on, say, a
   non-contiguous one: a fatal error that aborts the transport. Earlier
   versions join the items first, and raise. */
static PyObject *
writelines_item_failed(PyObject *self)
{
#if PY_VERSION_HEX >= 0x030C0000
    if (PyErr_ExceptionMatches(PyExc_BufferError)) {
        PyObject *exc = fl_err_get_raised();
        int rc = fatal_error(self, exc, write_error_message(ST(self)));
        Py_DECREF(exc);
        return rc < 0 ? NULL : Py_NewRef(Py_None);
    }
#endif
    return NULL;
}

static PyObject *
stream_writelines(PyObject *self, PyObject *list_of_data)
{
    FlStream *s = ST(self);
#if PY_VERSION_HEX >= 0x030C0000
    const char *what = "writelines";
#else
    const char *what = "write";
#endif
    if (check_writable(s, what) < 0) {
        return NULL;
    }
    /* A snapshot of a list: the items' __buffer__ may change the list. */
    PyObject *seq = PyList_Check(list_of_data) ? PyList_AsTuple(list_of_data)
        : PySequence_Fast(list_of_data, "writelines() expects an iterable");
    if (seq == NULL) {
        return NULL;
    }
    Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
    PyObject *ret = NULL;
    wbatch batch = {NULL, 0, 0};
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *d = PySequence_Fast_GET_ITEM(seq, i);
        if (!PyObject_CheckBuffer(d)) {
            PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like "
                         "object, not '%.200s'", Py_TYPE(d)->tp_name);
            goto done;
        }
    }
    if (writes_dropped(s)) {
        ret = n ? write_dropped(self) : Py_NewRef(Py_None);
        goto done;
    }
    if (wbatch_collect(&batch, seq) < 0) {
        ret = writelines_item_failed(self);
        goto done;
    }
    /* Python code may have run: check again before queueing anything. */
    if (check_writable(s, what) < 0) {
        goto done;
    }
    if (writes_dropped(s)) {
        ret = batch.n ? write_dropped(self) : Py_NewRef(Py_None);
        goto done;
    }
    if (batch.n == 0) {
        ret = Py_NewRef(Py_None);
        goto done;
    }
    if (wq_reserve(s, batch.n) < 0) {
        goto done;
    }
    int was_empty = s->tr.write_size == 0;
    if (s->kind == KIND_WRITE_PIPE && !s->pipe_sized
            && s->tr.write_size + batch.total >= PIPE_DEFAULT_CAPACITY) {
        grow_pipe_for_bulk(s);
    }
    for (Py_ssize_t i = 0; i < batch.n; i++) {
        s->wq[s->wq_head + s->wq_count++] = batch.chunks[i];    /* owned now */
        s->tr.write_size += batch.chunks[i].len;
    }
    batch.n = 0;
    if (was_empty) {
        /* One vectored send for the lot, queued only if it fell short. */
        ssize_t sent = wq_send(s);
        if (sent < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK) {
                PyObject *exc = errno_exception(errno);
                wq_clear(s);
                int rc = fatal_error(self, exc, write_error_message(s));
                Py_DECREF(exc);
                ret = rc < 0 ? NULL : Py_NewRef(Py_None);
                goto done;
            }
            sent = 0;
        }
        wq_consume(s, sent);
        if (s->tr.write_size) {
            fl_transport_watch_start(&s->tr, &s->tr.wio);
        }
    }
    if (fl_transport_maybe_pause_protocol(self, &s->tr) < 0) {
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    wbatch_free(&batch);
    Py_DECREF(seq);
    return ret;
}

static PyObject *
stream_write_eof(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlStream *s = ST(self);
    if (s->kind == KIND_WRITE_PIPE) {
        /* Closing the write end is the pipe's EOF: close once drained. */
        return fl_transport_close_method(self, NULL);
    }
    if (s->tr.closing || s->eof) {
        Py_RETURN_NONE;
    }
    s->eof = 1;
    if (s->tr.write_size == 0 && s->tr.fd >= 0 && io_shutdown_write(s) < 0) {
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_can_write_eof(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_RETURN_TRUE;
}

static PyObject *
stream_force_close(PyObject *self, PyObject *exc)
{
    if (fl_transport_force_close(self, exc) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_fatal_error(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs < 1 || nargs > 2) {
        PyErr_SetString(PyExc_TypeError, "_fatal_error(exc, message=...)");
        return NULL;
    }
    const char *message = "Fatal error on transport";
    if (nargs == 2 && (message = PyUnicode_AsUTF8(args[1])) == NULL) {
        return NULL;
    }
    if (fatal_error(self, args[0], message) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_pause_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlStream *s = ST(self);
    if (check_not_write_pipe(s, "pause_reading") < 0) {
        return NULL;
    }
    if (s->tr.closing || s->tr.paused) {
        Py_RETURN_NONE;
    }
    s->tr.paused = 1;
    fl_transport_watch_stop(&s->tr, &s->tr.rio);
    if (s->tr.loop->debug && fl_transport_call_helper("_log_debug", Py_BuildValue(
            "(sO)", "%r pauses reading", self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_resume_reading(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlStream *s = ST(self);
    if (check_not_write_pipe(s, "resume_reading") < 0) {
        return NULL;
    }
    if (s->tr.closing || !s->tr.paused) {
        Py_RETURN_NONE;
    }
    s->tr.paused = 0;
    if (s->made) {
        fl_transport_watch_start(&s->tr, &s->tr.rio);
    }
    if (s->tr.loop->debug && fl_transport_call_helper("_log_debug", Py_BuildValue(
            "(sO)", "%r resumes reading", self)) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_set_protocol(PyObject *self, PyObject *protocol)
{
    if (set_protocol(self, protocol) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
stream_make_empty_waiter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlStream *s = ST(self);
    if (s->empty_waiter != NULL && s->empty_waiter != Py_None) {
        PyErr_SetString(PyExc_RuntimeError, "Empty waiter is already set");
        return NULL;
    }
    PyObject *fut = PyObject_CallMethod((PyObject *)s->tr.loop, "create_future", NULL);
    if (fut == NULL) {
        return NULL;
    }
    if (s->tr.write_size == 0) {
        PyObject *r = PyObject_CallMethod(fut, "set_result", "O", Py_None);
        if (r == NULL) {
            Py_DECREF(fut);
            return NULL;
        }
        Py_DECREF(r);
    }
    Py_XSETREF(s->empty_waiter, Py_NewRef(fut));
    return fut;
}

static PyObject *
stream_reset_empty_waiter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    Py_CLEAR(ST(self)->empty_waiter);
    Py_RETURN_NONE;
}

static PyObject *
stream_repr(PyObject *self)
{
    FlStream *s = ST(self);
    /* asyncio's pipe transports say "open" once the loop is gone. */
    return fl_transport_repr(
        self, s->tr.sock == NULL || s->tr.loop->closed,
        s->kind != KIND_SOCKET && s->tr.sock != NULL ? " open" : "");
}

/* ---- attributes asyncio's own code reads ---- */

static PyObject *
get_loop(PyObject *self, void *c)
{
    FlStream *s = ST(self);
    return Py_NewRef(s->lost ? Py_None : (PyObject *)s->tr.loop);
}

/* `transport._pipe = None` (asyncio's tests do it after closing the pipe
   themselves) forgets the pipe without closing it: nothing watches its fd
   any more and no ResourceWarning is due. */
static int
set_pipe(PyObject *self, PyObject *v, void *c)
{
    FlStream *s = ST(self);
    if (v != Py_None || s->kind == KIND_SOCKET) {
        PyErr_SetString(PyExc_AttributeError,
                        "_pipe can only be set to None on a pipe transport");
        return -1;
    }
    fl_transport_watch_stop(&s->tr, &s->tr.rio);
    fl_transport_watch_stop(&s->tr, &s->tr.wio);
    if (s->tr.loop != NULL && s->tr.fd >= 0) {
        /* The fd's number is free for others now (issue #10, C10). */
        fl_fdowner_discard(s->tr.loop, s->tr.fd, self);
    }
    s->tr.fd = -1;
    Py_CLEAR(s->tr.sock);
    return 0;
}

static PyObject *
get_pipe(PyObject *self, void *c)
{
    PyObject *sock = ST(self)->tr.sock;
    return Py_NewRef(sock ? sock : Py_None);
}

static PyObject *
get_protocol_paused(PyObject *self, void *c)
{
    return PyBool_FromLong(ST(self)->tr.protocol_paused);
}

static int
set_protocol_paused(PyObject *self, PyObject *v, void *c)
{
    int b = v ? PyObject_IsTrue(v) : 0;
    if (b < 0) {
        return -1;
    }
    ST(self)->tr.protocol_paused = (char)b;
    return 0;
}

/* ---- lifetime ---- */

static void
stream_finalize(PyObject *self)
{
    FlStream *s = ST(self);
    if (s->tr.sock == NULL) {
        return;
    }
    PyObject *exc = fl_err_get_raised();
    if (PyErr_WarnFormat(PyExc_ResourceWarning, 1, "unclosed transport %R",
                         self) < 0) {
        PyErr_WriteUnraisable(self);
    }
    if (fl_transport_close_sock(self) < 0) {
        PyErr_WriteUnraisable(self);
    }
    s->tr.fd = -1;
    if (exc != NULL) {
        fl_err_set_raised(exc);
    }
}

/* The base's __slots__ (asyncio's _extra, _loop, ...) sit between the
   object header and our fields; we never set them, but a user may. */
static int
stream_traverse(PyObject *self, visitproc visit, void *arg)
{
    FlStream *s = ST(self);
    Py_VISIT(Py_TYPE(self));
    for (PyObject **p = (PyObject **)((char *)self + sizeof(PyObject));
         (char *)p < (char *)s; p++) {
        Py_VISIT(*p);
    }
    int r = fl_transport_traverse(&s->tr, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(s->server);
    Py_VISIT(s->empty_waiter);
    Py_VISIT(s->registry);
    for (Py_ssize_t i = 0; i < s->wq_count; i++) {
        Py_VISIT(s->wq[s->wq_head + i].obj);
    }
    return 0;
}

static int
stream_clear(PyObject *self)
{
    FlStream *s = ST(self);
    for (PyObject **p = (PyObject **)((char *)self + sizeof(PyObject));
         (char *)p < (char *)s; p++) {
        Py_CLEAR(*p);
    }
    fl_transport_clear(&s->tr);
    wq_clear(s);
    Py_CLEAR(s->server);
    Py_CLEAR(s->empty_waiter);
    Py_CLEAR(s->registry);
    return 0;
}

static void
stream_dealloc(PyObject *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc(self) < 0) {
        return;     /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    FlStream *s = ST(self);
    if (s->tr.weakreflist != NULL) {
        PyObject_ClearWeakRefs(self);
    }
    stream_clear(self);
    Py_CLEAR(s->tr.loop);
    PyMem_Free(s->wq);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef stream_methods[] = {
    FL_TRANSPORT_METHODS,
    {"write", stream_write, METH_O, NULL},
    {"writelines", stream_writelines, METH_O, NULL},
    {"write_eof", stream_write_eof, METH_NOARGS, NULL},
    {"can_write_eof", stream_can_write_eof, METH_NOARGS, NULL},
    {"pause_reading", stream_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", stream_resume_reading, METH_NOARGS, NULL},
    {"set_protocol", stream_set_protocol, METH_O, NULL},
    {"_force_close", stream_force_close, METH_O, NULL},
    {"_fatal_error", (PyCFunction)(void (*)(void))stream_fatal_error,
     METH_FASTCALL, NULL},
    {"_make_empty_waiter", stream_make_empty_waiter, METH_NOARGS, NULL},
    {"_reset_empty_waiter", stream_reset_empty_waiter, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

/* A read pipe has only the reading half, as asyncio's
   _UnixReadPipeTransport (a ReadTransport): no write(), abort() or write
   buffer methods. */
static PyMethodDef read_pipe_methods[] = {
    FL_TRANSPORT_READ_METHODS,
    {"pause_reading", stream_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", stream_resume_reading, METH_NOARGS, NULL},
    {"set_protocol", stream_set_protocol, METH_O, NULL},
    {"_force_close", stream_force_close, METH_O, NULL},
    {"_fatal_error", (PyCFunction)(void (*)(void))stream_fatal_error,
     METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef stream_getset[] = {
    {"__dict__", PyObject_GenericGetDict, PyObject_GenericSetDict, NULL, NULL},
    {"_loop", get_loop, NULL, NULL, NULL},
    {"_pipe", get_pipe, set_pipe, NULL, NULL},
    {"_protocol_paused", get_protocol_paused, set_protocol_paused, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

/* Offsets from the start of FlStream; moved to stream_offset at init. */
static PyMemberDef stream_members[] = {
    FL_TRANSPORT_MEMBERS(FlStream),
    FL_MEMBER("_fileno", T_INT, FlStream, tr.fd),
    FL_MEMBER("_protocol", T_OBJECT, FlStream, tr.protocol),
    FL_MEMBER("_server", T_OBJECT, FlStream, server),
    FL_MEMBER("_extra", T_OBJECT, FlStream, tr.extra),
    FL_MEMBER("_high_water", T_PYSSIZET, FlStream, tr.high_water),
    FL_MEMBER("_low_water", T_PYSSIZET, FlStream, tr.low_water),
    FL_MEMBER("_empty_waiter", T_OBJECT, FlStream, empty_waiter),
    FL_MEMBER("_eof", T_BOOL, FlStream, eof),
    FL_MEMBER("_paused", T_BOOL, FlStream, tr.paused),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot stream_slots[] = {
    {Py_tp_new, stream_tp_new},
    {Py_tp_init, stream_tp_init},
    {Py_tp_dealloc, stream_dealloc},
    {Py_tp_finalize, stream_finalize},
    {Py_tp_traverse, stream_traverse},
    {Py_tp_clear, stream_clear},
    {Py_tp_repr, stream_repr},
    {Py_tp_methods, stream_methods},
    {Py_tp_getset, stream_getset},
    {Py_tp_members, stream_members},
    {0, NULL},
};

static PyType_Spec stream_spec = {
    .name = "fastloop.StreamTransport",
    .basicsize = 0,             /* set from the base's size at init */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = stream_slots,
};

/* The same object with the read pipe's methods, on asyncio.ReadTransport;
   read_pipe_slots is stream_slots with the method table swapped at init. */
static PyType_Slot read_pipe_slots[sizeof(stream_slots) / sizeof(stream_slots[0])];

static PyType_Spec read_pipe_spec = {
    .name = "fastloop.ReadPipeTransport",
    .basicsize = 0,             /* stream_spec's */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = read_pipe_slots,
};

/* ---- module init ---- */

static int
intern_all(void)
{
    static const fl_name names[] = {
        {&str_data_received, "data_received"},
        {&str_get_buffer, "get_buffer"},
        {&str_buffer_updated, "buffer_updated"},
        {&str_eof_received, "eof_received"},
        {&str_attach, "_attach"},
        {&str_detach, "_detach"},
        {&str_getsockname, "getsockname"},
        {&str_getpeername, "getpeername"},
        {&str_fl_transports, "_fl_transports"},
    };
    return fl_intern(names, sizeof(names) / sizeof(names[0]));
}

int
fl_stream_module_init(PyObject *module)
{
    fl_transport_register_kind(FL_TRANSPORT_STREAM, &stream_impl);
    if (intern_all() < 0) {
        return -1;
    }
    PyObject *base = fl_import_attr("asyncio.transports",
                                    "_FlowControlMixin");
    PyObject *read_base = fl_import_attr("asyncio.transports",
                                         "ReadTransport");
    if (base == NULL || read_base == NULL) {
        Py_XDECREF(base);
        Py_XDECREF(read_base);
        return -1;
    }
    /* One offset for both types (FlStream after the bigger base, the
       _FlowControlMixin with its slots), so ST() serves either. */
    PyTypeObject *bt = (PyTypeObject *)base, *rt = (PyTypeObject *)read_base;
    if (!PyType_Check(base) || bt->tp_dictoffset != 0 || bt->tp_weaklistoffset != 0
            || bt->tp_itemsize != 0 || !PyType_Check(read_base)
            || rt->tp_dictoffset != 0 || rt->tp_weaklistoffset != 0
            || rt->tp_itemsize != 0 || rt->tp_basicsize > bt->tp_basicsize) {
        PyErr_SetString(PyExc_ImportError,
                        "unexpected asyncio.transports class layout");
        Py_DECREF(base);
        Py_DECREF(read_base);
        return -1;
    }
    Py_ssize_t align = (Py_ssize_t)sizeof(void *);
    stream_offset = (bt->tp_basicsize + align - 1) / align * align;
    stream_spec.basicsize = (int)(stream_offset + sizeof(FlStream));
    read_pipe_spec.basicsize = stream_spec.basicsize;
    fl_members_at(stream_members, stream_offset);
    memcpy(read_pipe_slots, stream_slots, sizeof(stream_slots));
    for (PyType_Slot *slot = read_pipe_slots; slot->slot != 0; slot++) {
        if (slot->slot == Py_tp_methods) {
            slot->pfunc = read_pipe_methods;
        }
    }
    PyObject *t = PyType_FromModuleAndSpec(module, &stream_spec, base);
    PyObject *r = t ? PyType_FromModuleAndSpec(module, &read_pipe_spec, read_base)
                    : NULL;
    Py_DECREF(base);
    Py_DECREF(read_base);
    if (t == NULL || r == NULL) {
        Py_XDECREF(t);
        return -1;
    }
    stream_type = (PyTypeObject *)t;
    read_pipe_type = (PyTypeObject *)r;
    if (PyModule_AddObjectRef(module, "StreamTransport", t) < 0
            || PyModule_AddObjectRef(module, "ReadPipeTransport", r) < 0) {
        return -1;
    }
    buffered_protocol_type = fl_import_attr("asyncio.protocols",
                                            "BufferedProtocol");
    transport_socket_type = fl_import_attr("asyncio.trsock",
                                           "TransportSocket");
    if (buffered_protocol_type == NULL || transport_socket_type == NULL) {
        return -1;
    }
    return 0;
}
