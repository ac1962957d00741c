/* Datagram transports (see udp.h).

   Semantics are asyncio's _SelectorDatagramTransport's, per Python version:
   connection_made, then reading, then the waiter, each "soon"; sendto()
   sends at once and buffers on EAGAIN; OSErrors go to error_received();
   connection_lost() runs once, after which the socket is closed.

   Lifetime: the loop keeps an open transport alive (asyncio's does,
   through the selector) in its set of live transports, loop._fl_transports,
   until connection_lost() has run or the loop is closed. A reference cycle
   through the loop, which the collector can break: a loop and transport
   that are dropped without being closed are collected, as asyncio's are. */
#include "transports/udp.h"
#include "loop/fdowner.h"
#include "transports/transport.h"
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#define UDP_MAX_SIZE (256 * 1024)       /* asyncio's max_size for recvfrom */
#define UDP_READS_PER_EVENT 32          /* datagrams read per readiness */

/* What a buffered datagram counts for in get_write_buffer_size(). */
#if PY_VERSION_HEX >= 0x030D0000
#define UDP_HEADER_SIZE 8
#else
#define UDP_HEADER_SIZE 0
#endif
/* Up to 3.12, sendto(b'') returns at once; 3.13 sends an empty datagram. */
#if PY_VERSION_HEX < 0x030D0000
#define UDP_SKIP_EMPTY 1
#else
#define UDP_SKIP_EMPTY 0
#endif

#ifndef MSG_DONTWAIT
#define MSG_DONTWAIT 0
#endif

typedef struct {
    PyObject *data;             /* bytes */
    PyObject *addr;             /* as given to sendto(), None when connected */
} udp_packet;

typedef struct {
    PyObject_HEAD
    fl_transport tr;            /* right after the header: its first field,
                                   extra, is BaseTransport's `_extra` slot.
                                   protocol is NULL after connection_lost();
                                   waiter is woken by the start entry */
    PyObject *address;          /* remote_addr given at creation, or NULL */
    PyObject *registry;         /* the loop's set of live transports */
    int family;

    udp_packet *buf;            /* ring of datagrams waiting to be sent */
    size_t head, count, cap;
    unsigned long cleared;      /* times the buffer was dropped (abort) */

    PyObject *last_addr;        /* sendto()'s last address and its parse */
    struct sockaddr_storage last_sa;
    socklen_t last_salen;

    char connected;             /* peername: send() instead of sendto() */
    char read_queued;           /* read_entry is in the ready queue */
    char write_queued;          /* write_entry is in the ready queue */
} FlUdpTransport;

static PyObject *str_datagram_received;
static PyObject *str_error_received;
static PyObject *str_peername;
static PyObject *str_fl_transports;

/* Datagrams are copied out before any Python code runs, under the GIL. */
static char recv_buf[UDP_MAX_SIZE];

static int fast_family(int family)
{
    return family == AF_INET || family == AF_INET6 || family == AF_UNIX;
}

/* ---- watchers ---- */

static int
check_loop_open(FlUdpTransport *self)
{
    if (self->tr.loop->closed || self->tr.loop->ev == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

static int
start_watcher(FlUdpTransport *self, ev_io *w)
{
    if (ev_is_active(w)) {
        return 0;
    }
    if (check_loop_open(self) < 0) {
        return -1;
    }
    if (self->tr.fd >= 0) {
        fl_transport_watch_start_checked(&self->tr, w);
    }
    return 0;
}

/* The loop no longer keeps the transport alive; the caller holds a
   reference. */
static void
release_self(FlUdpTransport *self)
{
    PyObject *registry = self->registry;
    if (registry == NULL) {
        return;
    }
    self->registry = NULL;
    if (PySet_Discard(registry, (PyObject *)self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    Py_DECREF(registry);
}

/* ---- reporting ---- */

/* A protocol callback raised (error set): what must stop the loop stays
   set (-1); the rest goes to the exception handler, as asyncio's Handle
   would report it. Never inlined: its message buffer would keep read_one()
   from being inlined into the read path. */
static Py_NO_INLINE int
callback_failed(FlUdpTransport *self, const char *what)
{
    char message[256];
    snprintf(message, sizeof(message), "Exception in callback %s.%s",
             Py_TYPE(self)->tp_name, what);
    return fl_transport_callback_failed((PyObject *)self, message);
}

/* ---- closing ---- */

static void
clear_write_buffer(PyObject *op)
{
    FlUdpTransport *self = (FlUdpTransport *)op;
    while (self->count) {
        udp_packet *p = &self->buf[self->head];
        self->head = (self->head + 1) & (self->cap - 1);
        self->count--;
        Py_DECREF(p->data);
        Py_DECREF(p->addr);
    }
    self->head = 0;
    self->tr.write_size = 0;
    self->cleared++;
}

/* Runs protocol.connection_lost(exc) in the transport's context (entered
   here unless the caller already did), then closes the socket; -1 only for
   errors that must stop the loop. */
static int
call_connection_lost(FlUdpTransport *self, PyObject *exc, int in_context)
{
    int r = 0;
    Py_INCREF(self);
    if (self->tr.conn_lost == 0) {
        self->tr.conn_lost = 1;
    }
    PyObject *protocol = self->tr.protocol;
    self->tr.protocol = NULL;
    if (protocol != NULL) {
        if (!in_context && PyContext_Enter(self->tr.context) < 0) {
            r = -1;
        }
        else {
            PyObject *args[2] = {protocol, exc};
            PyObject *res = PyObject_VectorcallMethod(
                fl_str_connection_lost, args, 2, NULL);
            if (!in_context) {
                PyObject *saved = fl_err_get_raised();
                PyContext_Exit(self->tr.context);
                if (saved != NULL) {
                    fl_err_set_raised(saved);
                }
            }
            if (res != NULL) {
                Py_DECREF(res);
            }
            else {
                /* The handler sees the protocol that failed. */
                self->tr.protocol = protocol;
                r = callback_failed(self, "_call_connection_lost()");
                self->tr.protocol = NULL;
            }
        }
    }
    Py_XDECREF(protocol);
    PyObject *saved = r < 0 ? fl_err_get_raised() : NULL;
    if (fl_transport_close_sock((PyObject *)self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    if (saved != NULL) {
        fl_err_set_raised(saved);
    }
    release_self(self);
    Py_DECREF(self);
    return r;
}

static int
lost_entry(FlLoop *loop, fl_ready_item *item)
{
    return call_connection_lost((FlUdpTransport *)item->arg, item->callback, 0);
}

static int start_reading(PyObject *op);

static const fl_transport_impl udp_impl = {
    .clear_write_buffer = clear_write_buffer,
    .lost_entry = lost_entry,
    .fatal_error = fl_transport_fatal_error,
    .start_reading = start_reading,
};

/* The current error came out of a send or receive: OSErrors go to
   error_received(), other exceptions are fatal for the transport. */
static int
io_error(FlUdpTransport *self, const char *fatal_message)
{
    if (fl_err_is_fatal()) {
        return -1;
    }
    PyObject *exc = fl_err_get_raised();
    int r;
    if (PyErr_GivenExceptionMatches(exc, PyExc_OSError)) {
        PyObject *protocol = Py_XNewRef(self->tr.protocol);
        if (protocol == NULL) {
            r = 0;
        }
        else {
            PyObject *args[2] = {protocol, exc};
            PyObject *res = PyObject_VectorcallMethod(
                str_error_received, args, 2, NULL);
            Py_DECREF(protocol);
            r = res == NULL ? -2 : 0;   /* -2: error_received() raised */
            Py_XDECREF(res);
        }
    }
    else {
        r = fl_transport_fatal_error((PyObject *)self, exc, fatal_message);
    }
    Py_DECREF(exc);
    return r;
}

/* ---- addresses ---- */

static PyObject *
make_addr(const struct sockaddr *sa, socklen_t len)
{
    if (len == 0) {
        Py_RETURN_NONE;     /* e.g. from an unbound AF_UNIX socket */
    }
    char host[INET6_ADDRSTRLEN];
    switch (sa->sa_family) {
    case AF_INET: {
        const struct sockaddr_in *a = (const struct sockaddr_in *)sa;
        if (inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(si)", host, (int)ntohs(a->sin_port));
    }
    case AF_INET6: {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;
        if (inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host)) == NULL) {
            return PyErr_SetFromErrno(PyExc_OSError);
        }
        return Py_BuildValue("(siII)", host, (int)ntohs(a->sin6_port),
                             (unsigned int)ntohl(a->sin6_flowinfo),
                             (unsigned int)a->sin6_scope_id);
    }
    case AF_UNIX: {
        const struct sockaddr_un *a = (const struct sockaddr_un *)sa;
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = len > off ? len - off : 0;
        if (plen > sizeof(a->sun_path)) {
            plen = sizeof(a->sun_path);
        }
        if (plen > 0 && a->sun_path[0] == '\0') {
            /* Linux's abstract namespace: bytes, as the socket module. */
            return PyBytes_FromStringAndSize(a->sun_path, (Py_ssize_t)plen);
        }
        return PyUnicode_DecodeFSDefaultAndSize(
            a->sun_path, (Py_ssize_t)strnlen(a->sun_path, plen));
    }
    default:
        PyErr_SetString(PyExc_OSError, "unexpected address family");
        return NULL;
    }
}

static int
long_in_range(PyObject *v, long lo, long hi, long *out)
{
    if (!PyLong_CheckExact(v)) {
        return 0;
    }
    long x = PyLong_AsLong(v);
    if (x == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    *out = x;
    return x >= lo && x <= hi;
}

/* Parses the common address forms in C: 1 done, 0 when the socket module
   must do it (host names, odd types, anything out of range: its own
   errors then). */
static int
parse_addr(int family, PyObject *addr, struct sockaddr_storage *ss,
           socklen_t *len)
{
    memset(ss, 0, sizeof(*ss));
    if (family == AF_UNIX) {
        struct sockaddr_un *a = (struct sockaddr_un *)ss;
        PyObject *path;
        if (PyUnicode_CheckExact(addr)) {
            path = PyUnicode_EncodeFSDefault(addr);
            if (path == NULL) {
                PyErr_Clear();
                return 0;
            }
        }
        else if (PyBytes_CheckExact(addr)) {
            path = Py_NewRef(addr);
        }
        else {
            return 0;
        }
        Py_ssize_t n = PyBytes_GET_SIZE(path);
        int ok = n > 0 && (size_t)n < sizeof(a->sun_path);
        if (ok) {
            a->sun_family = AF_UNIX;
            memcpy(a->sun_path, PyBytes_AS_STRING(path), (size_t)n);
            *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
        }
        Py_DECREF(path);
        return ok;
    }
    if (family != AF_INET && family != AF_INET6) {
        return 0;
    }
    if (!PyTuple_CheckExact(addr)) {
        return 0;
    }
    Py_ssize_t size = PyTuple_GET_SIZE(addr);
    if (size < 2 || size > (family == AF_INET ? 2 : 4)
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(addr, 0))) {
        return 0;
    }
    const char *host = PyUnicode_AsUTF8(PyTuple_GET_ITEM(addr, 0));
    long port, flowinfo = 0, scope_id = 0;
    if (host == NULL) {
        PyErr_Clear();
        return 0;
    }
    if (!long_in_range(PyTuple_GET_ITEM(addr, 1), 0, 65535, &port)) {
        return 0;
    }
    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)ss;
        if (inet_pton(AF_INET, host, &a->sin_addr) != 1) {
            return 0;
        }
        a->sin_family = AF_INET;
        a->sin_port = htons((uint16_t)port);
        *len = sizeof(*a);
        return 1;
    }
    if ((size > 2 && !long_in_range(PyTuple_GET_ITEM(addr, 2), 0, 0xfffff,
                                    &flowinfo))
            || (size > 3 && !long_in_range(PyTuple_GET_ITEM(addr, 3), 0,
                                           (long)UINT32_MAX, &scope_id))) {
        return 0;
    }
    struct sockaddr_in6 *a = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET6, host, &a->sin6_addr) != 1) {
        return 0;
    }
    a->sin6_family = AF_INET6;
    a->sin6_port = htons((uint16_t)port);
    a->sin6_flowinfo = htonl((uint32_t)flowinfo);
    a->sin6_scope_id = (uint32_t)scope_id;
    *len = sizeof(*a);
    return 1;
}

/* The parsed form of addr, from the one-entry cache when it is the same
   address as last time: a server answers the same peers over and over. */
static int
cached_addr(FlUdpTransport *self, PyObject *addr)
{
    PyObject *last = self->last_addr;
    if (last != NULL) {
        if (last == addr) {
            return 1;
        }
        if (Py_TYPE(last) == Py_TYPE(addr)) {
            int eq = PyObject_RichCompareBool(last, addr, Py_EQ);
            if (eq < 0) {
                PyErr_Clear();
            }
            else if (eq) {
                return 1;
            }
        }
    }
    if (!parse_addr(self->family, addr, &self->last_sa, &self->last_salen)) {
        Py_CLEAR(self->last_addr);
        return 0;
    }
    Py_XSETREF(self->last_addr, Py_NewRef(addr));
    return 1;
}

/* ---- sending ---- */

/* The socket was closed behind the transport's back (its number may be
   another socket's now): OSError(EBADF) for the caller, and the transport
   stops watching and fails soon, instead of polling a number that is not
   its own. */
static void
fd_gone(FlUdpTransport *self)
{
    fl_transport_fd_lost(&self->tr, EBADF);
    errno = EBADF;
    PyErr_SetFromErrno(PyExc_OSError);
}

/* Sends one datagram: 0 sent, 1 the kernel would block, -1 error set. */
static int
send_one(FlUdpTransport *self, const char *data, Py_ssize_t len,
         PyObject *obj, PyObject *addr)
{
    ssize_t n;
    if (self->tr.sock == NULL) {
        errno = EBADF;
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    /* cached_addr() may run Python code (__eq__): the fd is checked right
       before each syscall. */
    if (self->connected) {
        if (!fl_transport_fd_ok(&self->tr)) {
            goto badf;
        }
        do {
            n = send(self->tr.fd, data, (size_t)len, MSG_DONTWAIT);
        } while (n < 0 && errno == EINTR);
    }
    else if (addr != Py_None && cached_addr(self, addr)) {
        if (!fl_transport_fd_ok(&self->tr)) {
            goto badf;
        }
        do {
            n = sendto(self->tr.fd, data, (size_t)len, MSG_DONTWAIT,
                       (struct sockaddr *)&self->last_sa, self->last_salen);
        } while (n < 0 && errno == EINTR);
    }
    else {
        /* The socket module's own parsing, resolution and errors. */
        PyObject *r = PyObject_CallMethod(self->tr.sock, "sendto", "OO", obj, addr);
        if (r != NULL) {
            Py_DECREF(r);
            return 0;
        }
        if (PyErr_ExceptionMatches(PyExc_BlockingIOError)
                || PyErr_ExceptionMatches(PyExc_InterruptedError)) {
            PyErr_Clear();
            return 1;
        }
        return -1;
    }
    if (n >= 0) {
        return 0;
    }
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return 1;
    }
    PyErr_SetFromErrno(PyExc_OSError);
    return -1;
badf:
    fd_gone(self);
    return -1;
}

static int
buffer_push(FlUdpTransport *self, PyObject *data, PyObject *addr)
{
    if (self->count == self->cap) {
        size_t cap = self->cap ? self->cap * 2 : 16;
        udp_packet *nb = PyMem_Malloc(cap * sizeof(*nb));
        if (nb == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        for (size_t i = 0; i < self->count; i++) {
            nb[i] = self->buf[(self->head + i) & (self->cap - 1)];
        }
        PyMem_Free(self->buf);
        self->buf = nb;
        self->cap = cap;
        self->head = 0;
    }
    udp_packet *p = &self->buf[(self->head + self->count) & (self->cap - 1)];
    p->data = Py_NewRef(data);
    p->addr = Py_NewRef(addr);
    self->count++;
    self->tr.write_size += PyBytes_GET_SIZE(data) + UDP_HEADER_SIZE;
    return 0;
}

/* asyncio's _sendto_ready(); -1 only for errors that must stop the loop. */
static int
sendto_ready(PyObject *op, PyObject *Py_UNUSED(arg))
{
    FlUdpTransport *self = (FlUdpTransport *)op;
    while (self->count) {
        /* Ours while we send: sendto() may run Python code (the address's
           __eq__ or __buffer__) that aborts the transport, which drops the
           buffer. Only a datagram still at its head is popped. */
        udp_packet p = self->buf[self->head];
        Py_INCREF(p.data);
        Py_INCREF(p.addr);
        unsigned long cleared = self->cleared;
        Py_ssize_t len = PyBytes_GET_SIZE(p.data);
        int r = send_one(self, PyBytes_AS_STRING(p.data), len, p.data, p.addr);
        if (r != 1 && cleared == self->cleared) {
            self->head = (self->head + 1) & (self->cap - 1);
            self->count--;
            self->tr.write_size -= len + UDP_HEADER_SIZE;
            Py_DECREF(p.data);
            Py_DECREF(p.addr);
        }
        Py_DECREF(p.data);
        Py_DECREF(p.addr);
        if (r == 1) {
            break;      /* try again when writable */
        }
        if (r < 0) {
            r = io_error(self, "Fatal write error on datagram transport");
            if (r == -2) {
                return callback_failed(self, "_sendto_ready()");
            }
            return r;
        }
    }
    if (fl_transport_maybe_resume_protocol((PyObject *)self, &self->tr) < 0) {
        return -1;
    }
    if (self->count == 0) {
        fl_transport_watch_stop(&self->tr, &self->tr.wio);
        if (self->tr.closing && self->tr.conn_lost == 0) {
            return call_connection_lost(self, Py_None, 1);
        }
    }
    return 0;
}

static int
write_entry(FlLoop *loop, fl_ready_item *item)
{
    FlUdpTransport *self = (FlUdpTransport *)item->arg;
    self->write_queued = 0;
    if (!ev_is_active(&self->tr.wio)) {
        return 0;   /* stopped since the poll */
    }
    return fl_transport_call_in_context((PyObject *)self, self->tr.context,
                                        sendto_ready, NULL);
}

/* The watchers only queue the work: like asyncio's selector callbacks, it
   runs after what was already in the ready queue when the poll came. */
static void
write_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlUdpTransport *self = w->data;
    self->tr.loop->io_events++;
    if (revents & EV_ERROR) {
        /* libev could not watch the fd (closed, or epoll_ctl refused it)
           and stopped us: fail instead of stalling. */
        fl_transport_fd_lost(&self->tr, fl_fd_watch_errno(self->tr.fd));
        return;
    }
    if (PyErr_Occurred() || self->write_queued) {
        return;
    }
    if (fl_ready_push(&self->tr.loop->ready, write_entry, (PyObject *)self) == 0) {
        self->write_queued = 1;
    }
}

/* ---- receiving ---- */

/* One datagram to the protocol: 1 read one, 0 stop reading for now, -1
   an error that must stop the loop. */
static int
read_one(FlUdpTransport *self)
{
    PyObject *data, *addr;
    if (fast_family(self->family)) {
        struct sockaddr_storage ss;
        socklen_t sslen = sizeof(ss);
        ssize_t n;
        if (!fl_transport_fd_ok(&self->tr)) {
            fd_gone(self);
            goto failed;
        }
        do {
            n = recvfrom(self->tr.fd, recv_buf, sizeof(recv_buf), 0,
                         (struct sockaddr *)&ss, &sslen);
        } while (n < 0 && errno == EINTR);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                return 0;
            }
            PyErr_SetFromErrno(PyExc_OSError);
            data = addr = NULL;
        }
        else {
            data = PyBytes_FromStringAndSize(recv_buf, n);
            addr = data ? make_addr((struct sockaddr *)&ss, sslen) : NULL;
        }
    }
    else {
        /* Other families (AF_PACKET, AF_NETLINK, ...): the socket module
           knows their addresses. */
        PyObject *r = PyObject_CallMethod(self->tr.sock, "recvfrom", "i",
                                          UDP_MAX_SIZE);
        data = addr = NULL;
        if (r == NULL) {
            if (PyErr_ExceptionMatches(PyExc_BlockingIOError)
                    || PyErr_ExceptionMatches(PyExc_InterruptedError)) {
                PyErr_Clear();
                return 0;
            }
        }
        else if (!PyArg_ParseTuple(r, "OO", &data, &addr)) {
            data = addr = NULL;
        }
        else {
            Py_INCREF(data);
            Py_INCREF(addr);
        }
        Py_XDECREF(r);
    }
    if (data == NULL || addr == NULL) {
        Py_XDECREF(data);
failed:;
        int r = io_error(self, "Fatal read error on datagram transport");
        if (r == -2) {
            r = callback_failed(self, "_read_ready()");
        }
        return r < 0 ? -1 : 0;
    }
    /* Allocations above may have run the collector, and Python code. */
    PyObject *protocol = Py_XNewRef(self->tr.protocol);
    if (protocol == NULL) {
        Py_DECREF(data);
        Py_DECREF(addr);
        return 0;
    }
    PyObject *args[3] = {protocol, data, addr};
    PyObject *res = PyObject_VectorcallMethod(str_datagram_received, args, 3,
                                              NULL);
    Py_DECREF(protocol);
    Py_DECREF(data);
    Py_DECREF(addr);
    if (res == NULL) {
        return callback_failed(self, "_read_ready()") < 0 ? -1 : 1;
    }
    Py_DECREF(res);
    return 1;
}

/* asyncio's _read_ready(), for up to UDP_READS_PER_EVENT datagrams. */
static int
read_entry(FlLoop *loop, fl_ready_item *item)
{
    FlUdpTransport *self = (FlUdpTransport *)item->arg;
    self->read_queued = 0;
    if (!ev_is_active(&self->tr.rio)) {
        return 0;   /* paused or closed since the poll */
    }
    if (PyContext_Enter(self->tr.context) < 0) {
        return -1;
    }
    int r = 0;
    /* Closing or pausing from a callback stops the watcher. */
    for (int i = 0; i < UDP_READS_PER_EVENT && ev_is_active(&self->tr.rio)
                    && self->tr.protocol != NULL; i++) {
        r = read_one(self);
        if (r <= 0) {
            break;
        }
    }
    return fl_transport_exit_context(self->tr.context, r < 0 ? -1 : 0);
}

static void
read_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlUdpTransport *self = w->data;
    self->tr.loop->io_events++;
    if (revents & EV_ERROR) {
        fl_transport_fd_lost(&self->tr, fl_fd_watch_errno(self->tr.fd));
        return;
    }
    if (PyErr_Occurred() || self->read_queued) {
        return;
    }
    if (fl_ready_push(&self->tr.loop->ready, read_entry, (PyObject *)self) == 0) {
        self->read_queued = 1;
    }
}

/* ---- start ---- */

/* Once connection_made() ran (fl_transport_schedule_made). */
static int
start_reading(PyObject *op)
{
    FlUdpTransport *self = (FlUdpTransport *)op;
    if (!self->tr.closing && !self->tr.paused
            && start_watcher(self, &self->tr.rio) < 0) {
        return callback_failed(self, "_add_reader()");
    }
    return 0;
}

static int
get_fd(PyObject *sock)
{
    int fd = fl_transport_sock_fd(sock);
    if (fd < 0) {
        return -1;
    }
    if (fl_fd_check_open(fd) < 0) {
        return -1;
    }
    return fd;
}

static PyObject *
udp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol", "address", "waiter",
                             "extra", NULL};
    PyObject *loop, *sock, *protocol, *address = Py_None, *waiter = Py_None;
    PyObject *extra = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|OOO:DatagramTransport",
                                     kwlist, &loop, &sock, &protocol,
                                     &address, &waiter, &extra)) {
        return NULL;
    }
    if (fl_loop_from_arg(type, loop) == NULL) {
        return NULL;
    }
    if (extra != Py_None && !PyDict_Check(extra)) {
        PyErr_SetString(PyExc_TypeError, "extra must be a dict or None");
        return NULL;
    }
    if (fl_loop_check_closed((FlLoop *)loop) < 0) {
        return NULL;
    }
    int fd = get_fd(sock);
    if (fd < 0) {
        return NULL;
    }
    if (fl_transport_check_fd_free((FlLoop *)loop, fd, sock) < 0) {
        return NULL;
    }
    PyObject *family = PyObject_GetAttrString(sock, "family");
    long fam = family ? PyLong_AsLong(family) : -1;
    Py_XDECREF(family);
    if (fam == -1 && PyErr_Occurred()) {
        return NULL;
    }
    FlUdpTransport *self = (FlUdpTransport *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    fl_transport_init((PyObject *)self, FL_TRANSPORT_DATAGRAM, (FlLoop *)loop, fd,
                      read_cb, write_cb);
    self->tr.sock = Py_NewRef(sock);
    self->tr.protocol = Py_NewRef(protocol);
    self->address = address == Py_None ? NULL : Py_NewRef(address);
    self->tr.waiter = waiter == Py_None ? NULL : Py_NewRef(waiter);
    self->family = (int)fam;
    self->tr.extra = extra == Py_None ? PyDict_New() : Py_NewRef(extra);
    self->tr.context = PyContext_CopyCurrent();
    if (self->tr.extra == NULL || self->tr.context == NULL) {
        goto error;
    }
    PyObject *peer = PyDict_GetItemWithError(self->tr.extra, str_peername);
    if (peer == NULL && PyErr_Occurred()) {
        goto error;
    }
    int truth = peer ? PyObject_IsTrue(peer) : 0;
    if (truth < 0) {
        goto error;
    }
    self->connected = (char)truth;

    PyObject *targ = (PyObject *)self;
    self->registry = PyObject_GetAttr(loop, str_fl_transports);
    if (self->registry == NULL || PySet_Add(self->registry, targ) < 0) {
        goto error;
    }
    /* After the Python code above: is fd still the socket's? */
    if (fl_transport_bind_fd(&self->tr) < 0
            || fl_fdowner_add(self->tr.loop, fd, targ) < 0) {
        goto error;
    }
    if (fl_transport_schedule_made(targ) < 0) {
        goto error;
    }
    return (PyObject *)self;

error:
    fl_fdowner_discard(self->tr.loop, fd, (PyObject *)self);
    release_self(self);
    Py_CLEAR(self->tr.sock);   /* still the caller's: no warning, no close */
    Py_DECREF(self);
    return NULL;
}

/* Accepts the constructor's arguments: udp_new did the work, and
   BaseTransport.__init__ must not run. */
static int
udp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
    return 0;
}

/* ---- Python-visible methods ---- */

static PyObject *
udp_sendto(FlUdpTransport *self, PyObject *const *args, Py_ssize_t nargs,
           PyObject *kwnames)
{
    PyObject *data = NULL, *addr = Py_None;
    Py_ssize_t nkw = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (nargs > 2 || nargs + nkw > 2) {
        PyErr_Format(PyExc_TypeError,
                     "sendto() takes from 2 to 3 positional arguments but "
                     "%zd were given", nargs + nkw + 1);
        return NULL;
    }
    if (nargs >= 1) {
        data = args[0];
    }
    if (nargs == 2) {
        addr = args[1];
    }
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *name = PyTuple_GET_ITEM(kwnames, i);
        PyObject *value = args[nargs + i];
        if (PyUnicode_CompareWithASCIIString(name, "addr") == 0 && nargs < 2) {
            addr = value;
        }
        else if (PyUnicode_CompareWithASCIIString(name, "data") == 0
                 && nargs < 1) {
            data = value;
        }
        else {
            PyErr_Format(PyExc_TypeError,
                         "sendto() got an unexpected keyword argument %R", name);
            return NULL;
        }
    }
    if (data == NULL) {
        PyErr_SetString(PyExc_TypeError,
                        "sendto() missing 1 required positional argument: "
                        "'data'");
        return NULL;
    }
    if (!PyBytes_Check(data) && !PyByteArray_Check(data)
            && !PyMemoryView_Check(data)) {
        PyObject *name = PyObject_GetAttrString((PyObject *)Py_TYPE(data),
                                                "__name__");
        if (name != NULL) {
            PyErr_Format(PyExc_TypeError, "data argument must be a bytes-like "
                         "object, not %R", name);
            Py_DECREF(name);
        }
        return NULL;
    }
    if (UDP_SKIP_EMPTY) {
        Py_ssize_t n = PyObject_Length(data);
        if (n < 0) {
            return NULL;
        }
        if (n == 0) {
            Py_RETURN_NONE;     /* before the address check, as asyncio */
        }
    }
    if (self->address != NULL) {
        if (addr != Py_None && addr != self->address) {
            int eq = PyObject_RichCompareBool(addr, self->address, Py_EQ);
            if (eq < 0) {
                return NULL;
            }
            if (!eq) {
                PyErr_Format(PyExc_ValueError,
                             "Invalid address: must be None or %S",
                             self->address);
                return NULL;
            }
        }
        addr = self->address;
    }
    /* After connection_lost(): asyncio counts and drops datagrams of a
       connected transport; the socket is gone for an unconnected one too. */
    if (self->tr.conn_lost && (self->address != NULL || self->tr.sock == NULL)) {
        if (fl_transport_write_dropped((PyObject *)self,
                                       "socket.send() raised exception.") < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    Py_buffer view;
    if (PyObject_GetBuffer(data, &view, PyBUF_SIMPLE) < 0) {
        if (fl_err_is_fatal()) {
            return NULL;
        }
        PyObject *exc = fl_err_get_raised();
        int r = fl_transport_fatal_error((PyObject *)self, exc,
                                         "Fatal write error on datagram transport");
        Py_DECREF(exc);
        if (r < 0) {
            return NULL;
        }
        Py_RETURN_NONE;
    }
    if (self->count == 0) {
        int r = send_one(self, view.buf, view.len, data, addr);
        if (r == 0) {
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        }
        if (r < 0) {
            PyBuffer_Release(&view);
            r = io_error(self, "Fatal write error on datagram transport");
            if (r < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        if (self->tr.conn_lost) {
            /* Aborted by the Python code sendto() ran (the address's
               __buffer__, say): nothing will be sent any more. */
            PyBuffer_Release(&view);
            Py_RETURN_NONE;
        }
        if (start_watcher(self, &self->tr.wio) < 0) {
            PyBuffer_Release(&view);
            return NULL;
        }
    }
    /* What we buffer must not change under us. */
    PyObject *copy = PyBytes_CheckExact(data) ? Py_NewRef(data)
        : PyBytes_FromStringAndSize(view.buf, view.len);
    PyBuffer_Release(&view);
    if (copy == NULL) {
        return NULL;
    }
    int r = buffer_push(self, copy, addr);
    Py_DECREF(copy);
    if (r < 0
            || fl_transport_maybe_pause_protocol((PyObject *)self, &self->tr) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
udp_pause_reading(FlUdpTransport *self, PyObject *Py_UNUSED(ignored))
{
    if (self->tr.closing || self->tr.paused) {
        Py_RETURN_NONE;
    }
    self->tr.paused = 1;
    fl_transport_watch_stop(&self->tr, &self->tr.rio);
    Py_RETURN_NONE;
}

static PyObject *
udp_resume_reading(FlUdpTransport *self, PyObject *Py_UNUSED(ignored))
{
    if (self->tr.closing || !self->tr.paused) {
        Py_RETURN_NONE;
    }
    self->tr.paused = 0;
    if (start_watcher(self, &self->tr.rio) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
udp_set_protocol(FlUdpTransport *self, PyObject *protocol)
{
    Py_XSETREF(self->tr.protocol, Py_NewRef(protocol));
    Py_RETURN_NONE;
}

static PyObject *
udp_repr(FlUdpTransport *self)
{
    return fl_transport_repr((PyObject *)self, self->tr.loop->closed, "");
}

static PyObject *
udp_get_loop(FlUdpTransport *self, void *closure)
{
    return Py_NewRef(self->tr.sock ? (PyObject *)self->tr.loop : Py_None);
}

/* ---- object protocol ---- */

static void
udp_finalize(FlUdpTransport *self)
{
    if (self->tr.sock == NULL) {
        return;
    }
    PyObject *saved = fl_err_get_raised();
    if (PyErr_ResourceWarning((PyObject *)self, 1, "unclosed transport %R",
                              self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    if (fl_transport_close_sock((PyObject *)self) < 0) {
        PyErr_WriteUnraisable((PyObject *)self);
    }
    if (saved != NULL) {
        fl_err_set_raised(saved);
    }
}

static int
udp_traverse(FlUdpTransport *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    int r = fl_transport_traverse(&self->tr, visit, arg);
    if (r != 0) {
        return r;
    }
    Py_VISIT(self->address);
    Py_VISIT(self->registry);
    Py_VISIT(self->last_addr);
    for (size_t i = 0; i < self->count; i++) {
        udp_packet *p = &self->buf[(self->head + i) & (self->cap - 1)];
        Py_VISIT(p->data);
        Py_VISIT(p->addr);
    }
    return 0;
}

static int
udp_clear(FlUdpTransport *self)
{
    clear_write_buffer((PyObject *)self);
    fl_transport_clear(&self->tr);
    Py_CLEAR(self->address);
    Py_CLEAR(self->registry);
    Py_CLEAR(self->last_addr);
    return 0;
}

static void
udp_dealloc(FlUdpTransport *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    if (PyObject_CallFinalizerFromDealloc((PyObject *)self) < 0) {
        return;     /* resurrected */
    }
    PyObject_GC_UnTrack(self);
    if (self->tr.weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    udp_clear(self);
    Py_CLEAR(self->tr.loop);
    PyMem_Free(self->buf);
    tp->tp_free(self);
    Py_DECREF(tp);
}

static PyMethodDef udp_methods[] = {
    FL_TRANSPORT_METHODS,
    {"sendto", (PyCFunction)(void (*)(void))udp_sendto,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"pause_reading", (PyCFunction)udp_pause_reading, METH_NOARGS, NULL},
    {"resume_reading", (PyCFunction)udp_resume_reading, METH_NOARGS, NULL},
    {"set_protocol", (PyCFunction)udp_set_protocol, METH_O, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef udp_getset[] = {
    {"_loop", (getter)udp_get_loop, NULL, NULL, NULL},
    {NULL},
};

static PyMemberDef udp_members[] = {
    FL_TRANSPORT_MEMBERS(FlUdpTransport),
    FL_MEMBER("_address", T_OBJECT, FlUdpTransport, address),
    {NULL},
};

static PyType_Slot udp_slots[] = {
    {Py_tp_new, udp_new},
    {Py_tp_init, udp_init},
    {Py_tp_dealloc, udp_dealloc},
    {Py_tp_finalize, udp_finalize},
    {Py_tp_traverse, udp_traverse},
    {Py_tp_clear, udp_clear},
    {Py_tp_repr, udp_repr},
    {Py_tp_methods, udp_methods},
    {Py_tp_getset, udp_getset},
    {Py_tp_members, udp_members},
    {Py_tp_doc, "fastloop's datagram transport, in C; an asyncio.Transport "
                "and asyncio.DatagramTransport."},
    {0, NULL},
};

static PyType_Spec udp_spec = {
    .name = "fastloop.DatagramTransport",
    .basicsize = sizeof(FlUdpTransport),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = udp_slots,
};

/* class _DatagramTransportBase(asyncio.Transport, asyncio.DatagramTransport)
   with __slots__ = (): isinstance() holds for both, as for asyncio's own
   transport on 3.12+, and its one slot (_extra) is our `extra` field. */
static PyObject *
make_base(void)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return NULL;
    }
    PyObject *base = NULL, *ns = NULL;
    PyObject *tr = PyObject_GetAttrString(asyncio, "Transport");
    PyObject *dg = PyObject_GetAttrString(asyncio, "DatagramTransport");
    PyObject *bt = PyObject_GetAttrString(asyncio, "BaseTransport");
    PyObject *slot = bt ? PyObject_GetAttrString(bt, "_extra") : NULL;
    if (tr == NULL || dg == NULL || slot == NULL) {
        goto done;
    }
    ns = Py_BuildValue("{s:(),s:s}", "__slots__", "__module__", "fastloop");
    if (ns == NULL) {
        goto done;
    }
    base = PyObject_CallFunction((PyObject *)&PyType_Type, "s(OO)O",
                                 "_DatagramTransportBase", tr, dg, ns);
    if (base == NULL) {
        goto done;
    }
    PyTypeObject *bt_type = (PyTypeObject *)base;
    if (!Py_IS_TYPE(slot, &PyMemberDescr_Type)
            || ((PyMemberDescrObject *)slot)->d_member->offset
               != offsetof(FlUdpTransport, tr.extra)
            || bt_type->tp_basicsize != offsetof(FlUdpTransport, tr.dict)
            || bt_type->tp_dictoffset != 0 || bt_type->tp_weaklistoffset != 0) {
        PyErr_SetString(PyExc_ImportError,
                        "unexpected asyncio.BaseTransport layout");
        Py_CLEAR(base);
    }
done:
    Py_DECREF(asyncio);
    Py_XDECREF(tr);
    Py_XDECREF(dg);
    Py_XDECREF(bt);
    Py_XDECREF(slot);
    Py_XDECREF(ns);
    return base;
}

int
fl_udp_module_init(PyObject *module)
{
    fl_transport_register_kind(FL_TRANSPORT_DATAGRAM, &udp_impl);
    static const fl_name names[] = {
        {&str_datagram_received, "datagram_received"},
        {&str_error_received, "error_received"},
        {&str_peername, "peername"},
        {&str_fl_transports, "_fl_transports"},
    };
    if (fl_intern(names, sizeof(names) / sizeof(names[0])) < 0) {
        return -1;
    }
    PyObject *base = make_base();
    if (base == NULL) {
        return -1;
    }
    PyObject *type = PyType_FromModuleAndSpec(module, &udp_spec, base);
    Py_DECREF(base);
    if (type == NULL) {
        return -1;
    }
    PyObject *max_size = PyLong_FromLong(UDP_MAX_SIZE);
    if (max_size == NULL
            || PyObject_SetAttrString(type, "max_size", max_size) < 0
            || PyModule_AddObjectRef(module, "DatagramTransport", type) < 0) {
        Py_XDECREF(max_size);
        Py_DECREF(type);
        return -1;
    }
    Py_DECREF(max_size);
    Py_DECREF(type);    /* the module holds it */
    return 0;
}
