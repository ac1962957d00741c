/* Listener: a listening socket whose connections are accepted in C.

   One ev_io watcher on the listening fd; each readiness accepts up to
   `backlog` connections through the socket's own _accept() and makes a
   StreamTransport for each (TLS connections go to asyncio's
   _accept_connection2, through fastloop._network). Running out of fds or
   memory is reported and pauses accepting for a while, as asyncio does. */
#include "transports/server.h"
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <sys/socket.h>
#include <unistd.h>
#include "transports/stream.h"
#include "transports/transport.h"

static PyObject *socket_type;

typedef struct {
    PyObject_HEAD
    FlLoop *loop;
    PyObject *sock;
    PyObject *accept;           /* sock._accept: (fd, address) */
    PyObject *factory;
    PyObject *sslcontext;       /* None for plain connections */
    PyObject *server;
    PyObject *hs_timeout, *sh_timeout;
    PyObject *context;
    /* Shared with the connections whose addresses equal them: see
       share_addresses(). */
    PyObject *last_sockname, *last_peer_host;
    ev_io w;
    ev_prepare guard;           /* one-shot: the fd is still the socket's
                                   when libev first polls it */
    int family, type, proto;
    int backlog;
    char stopped;
} FlListener;

static void
listener_stop_watch(FlListener *l)
{
    if (l->loop != NULL && l->loop->ev != NULL) {
        if (ev_is_active(&l->w)) {
            ev_io_stop(l->loop->ev, &l->w);
        }
        if (ev_is_active(&l->guard)) {
            ev_prepare_stop(l->loop->ev, &l->guard);
        }
    }
}

/* Does the listening socket still hold the fd we watch? Closed behind the
   server's back, its number may be reused by anything. */
static int
listener_fd_ok(FlListener *l)
{
    int now = l->sock != NULL ? fl_socket_fd_now(l->sock) : -1;
    if (now == -2) {
        return fl_fd_is_open(l->w.fd);   /* not a socket object */
    }
    return now == l->w.fd;
}

/* Starts accepting, unless the socket was closed (libev would abort the
   process on a closed fd at its next poll; the guard re-checks then). */
static void
listener_watch(FlListener *l)
{
    if (l->loop->ev == NULL || ev_is_active(&l->w) || !listener_fd_ok(l)) {
        return;
    }
    ev_io_start(l->loop->ev, &l->w);
    if (!ev_is_active(&l->guard)) {
        ev_prepare_start(l->loop->ev, &l->guard);
    }
}

static void
guard_cb(struct ev_loop *ev, ev_prepare *w, int revents)
{
    FlListener *l = w->data;
    ev_prepare_stop(ev, w);
    if (ev_is_active(&l->w) && !listener_fd_ok(l)) {
        ev_io_stop(ev, &l->w);
    }
}

static int
accept_error(FlListener *l)
{
    if (PyErr_ExceptionMatches(PyExc_BlockingIOError)
            || PyErr_ExceptionMatches(PyExc_InterruptedError)
            || PyErr_ExceptionMatches(PyExc_ConnectionAbortedError)) {
        PyErr_Clear();
        return 1;   /* the backlog is empty */
    }
    PyObject *exc = fl_err_take_nonfatal();
    if (exc == NULL) {
        return -1;
    }
    /* Out of fds or memory: the helper logs, and pauses us for a while
       (Linux keeps reporting the socket readable). */
    int rc = fl_transport_call_helper("_accept_error", Py_BuildValue(
        "(OOO)", (PyObject *)l->loop, (PyObject *)l, exc));
    Py_DECREF(exc);
    return rc < 0 ? -1 : 1;
}

/* An idle connection's memory is mostly small objects, and two of them
   repeat: every connection accepted on one address has the same sockname,
   and a client host usually opens many connections. The connection keeps
   the listener's equal objects instead of its own (the values, immutable,
   are what asyncio would store). */
static int
share_sockname(FlListener *l, PyObject *extra)
{
    PyObject *name = PyDict_GetItemWithError(extra, fl_str_sockname);
    if (name == NULL) {
        return PyErr_Occurred() ? -1 : 0;
    }
    int same = l->last_sockname == NULL
               ? 0 : PyObject_RichCompareBool(name, l->last_sockname, Py_EQ);
    if (same < 0) {
        return -1;
    }
    if (!same) {
        Py_XSETREF(l->last_sockname, Py_NewRef(name));
        return 0;
    }
    return PyDict_SetItem(extra, fl_str_sockname, l->last_sockname);
}

/* addr with its host string replaced by the listener's equal one; a new
   reference. */
static PyObject *
share_peer_host(FlListener *l, PyObject *addr)
{
    if (!PyTuple_CheckExact(addr) || PyTuple_GET_SIZE(addr) < 2
            || !PyUnicode_CheckExact(PyTuple_GET_ITEM(addr, 0))) {
        return Py_NewRef(addr);
    }
    PyObject *host = PyTuple_GET_ITEM(addr, 0);
    if (l->last_peer_host == NULL || host == l->last_peer_host) {
        Py_XSETREF(l->last_peer_host, Py_NewRef(host));
        return Py_NewRef(addr);
    }
    if (PyUnicode_Compare(host, l->last_peer_host) != 0) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        Py_SETREF(l->last_peer_host, Py_NewRef(host));
        return Py_NewRef(addr);
    }
    Py_ssize_t n = PyTuple_GET_SIZE(addr);
    PyObject *shared = PyTuple_New(n);
    if (shared == NULL) {
        return NULL;
    }
    PyTuple_SET_ITEM(shared, 0, Py_NewRef(l->last_peer_host));
    for (Py_ssize_t i = 1; i < n; i++) {
        PyTuple_SET_ITEM(shared, i, Py_NewRef(PyTuple_GET_ITEM(addr, i)));
    }
    return shared;
}

static int
accept_plain(FlListener *l, PyObject *conn, PyObject *addr, PyObject *ctx)
{
    int rc = 0;
    PyObject *protocol = NULL, *extra = NULL, *tr = NULL;
    protocol = PyObject_CallNoArgs(l->factory);
    PyObject *peername = protocol ? share_peer_host(l, addr) : NULL;
    if (peername != NULL) {
        extra = Py_BuildValue("{sN}", "peername", peername);
        if (extra != NULL) {
            tr = fl_stream_new_socket(l->loop, conn, protocol, extra, l->server,
                                      ctx);
        }
        if (tr != NULL && share_sockname(l, extra) < 0) {
            /* Only sharing failed; the transport keeps its own sockname. */
            PyErr_Clear();
        }
    }
    if (tr == NULL) {
        PyObject *exc = fl_err_take_nonfatal();
        if (exc == NULL) {
            rc = -1;
        }
        else {
            PyObject *r = fl_call_method0(conn, fl_str_close);
            Py_XDECREF(r);
            if (r == NULL) {
                PyErr_Clear();
            }
            rc = fl_transport_call_helper("_accept_failed", Py_BuildValue(
                "(OOOO)", (PyObject *)l->loop, exc,
                protocol ? protocol : Py_None, (PyObject *)l));
            Py_DECREF(exc);
        }
    }
    Py_XDECREF(tr);
    Py_XDECREF(extra);
    Py_XDECREF(protocol);
    return rc;
}

/* TLS: asyncio's _accept_connection2 as a task, which makes the protocol,
   the SSL protocol and the transport. */
static int
accept_ssl(FlListener *l, PyObject *conn, PyObject *addr, PyObject *ctx)
{
    return fl_transport_call_helper("_accept_ssl", Py_BuildValue(
        "(OOOO)", (PyObject *)l->loop, (PyObject *)l, conn, addr));
}

/* A new connection, plain or TLS, in a copy of the context that was
   current when the server was made: what asyncio's accept Handle (made by
   _start_serving) runs in, and every callback of the connection after. */
static int
accept_in_context(FlListener *l, PyObject *conn, PyObject *addr)
{
    PyObject *ctx = PyContext_Copy(l->context);
    if (ctx == NULL) {
        return -1;
    }
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(ctx);
        return -1;
    }
    int rc = l->sslcontext != Py_None ? accept_ssl(l, conn, addr, ctx)
                                      : accept_plain(l, conn, addr, ctx);
    PyObject *pending = rc < 0 ? fl_err_get_raised() : NULL;
    if (PyContext_Exit(ctx) < 0) {
        PyErr_WriteUnraisable(ctx);
    }
    Py_DECREF(ctx);
    if (pending != NULL) {
        fl_err_set_raised(pending);
    }
    return rc;
}

static int
accept_one(FlListener *l)
{
    PyObject *res = PyObject_CallNoArgs(l->accept);
    if (res == NULL) {
        return accept_error(l);
    }
    int fd;
    PyObject *addr;
    if (!PyArg_ParseTuple(res, "iO", &fd, &addr)) {
        Py_DECREF(res);
        return -1;
    }
    Py_INCREF(addr);
    Py_DECREF(res);
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        close(fd);
        Py_DECREF(addr);
        return 0;
    }
    /* SOCK_NONBLOCK in the type tells the socket object that the fd is
       non-blocking (timeout 0); the object's type drops the flag. */
    PyObject *conn = PyObject_CallFunction(socket_type, "iiii", l->family,
                                           l->type | SOCK_NONBLOCK, l->proto, fd);
    if (conn == NULL) {
        close(fd);
        Py_DECREF(addr);
        return accept_error(l) < 0 ? -1 : 0;
    }
    int rc = accept_in_context(l, conn, addr);
    Py_DECREF(conn);
    Py_DECREF(addr);
    return rc;
}

static int
do_accept(FlListener *l)
{
    for (int i = 0; i < l->backlog && !l->stopped; i++) {
        int r = accept_one(l);
        if (r != 0) {
            return r < 0 ? -1 : 0;
        }
    }
    return 0;
}

/* The watch itself failed: libev's EV_ERROR (epoll_ctl refused the fd,
   ENOSPC at fs.epoll.max_user_watches, and stopped the watcher), or the
   socket was closed behind the server's back. Reported, never silent:
   _accept_error() retries later after running out of a resource. */
static int
watch_failed(FlListener *l, int err)
{
    listener_stop_watch(l);
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    PyObject *exc = fl_err_get_raised();
    if (exc == NULL) {
        return -1;
    }
    int rc = fl_transport_call_helper("_accept_error", Py_BuildValue(
        "(OOO)", (PyObject *)l->loop, (PyObject *)l, exc));
    Py_DECREF(exc);
    return rc;
}

static int
do_accept_ready(FlListener *l, int revents)
{
    if (revents & EV_ERROR) {
        return watch_failed(l, fl_fd_watch_errno(l->w.fd));
    }
    if (!listener_fd_ok(l)) {
        return watch_failed(l, EBADF);
    }
    return do_accept(l);
}

static void
accept_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlListener *l = w->data;
    FlLoop *loop = l->loop;
    loop->io_events++;
    if (PyErr_Occurred()) {
        return;
    }
    Py_INCREF(l);
    Py_INCREF(loop);
    if (do_accept_ready(l, revents) < 0) {
        if (!fl_err_is_fatal()) {
            PyObject *exc = fl_err_get_raised();
            if (fl_transport_call_helper("_accept_error", Py_BuildValue(
                    "(OOO)", (PyObject *)loop, (PyObject *)l, exc)) < 0) {
                fl_err_stash_fatal(loop);
            }
            Py_DECREF(exc);
        }
        else {
            fl_err_stash_fatal(loop);
        }
    }
    Py_DECREF(loop);
    Py_DECREF(l);
}

static PyObject *
listener_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "sock", "protocol_factory", "sslcontext",
                             "server", "backlog", "ssl_handshake_timeout",
                             "ssl_shutdown_timeout", NULL};
    PyObject *loop, *sock, *factory, *sslcontext = Py_None, *server = Py_None,
             *hs = Py_None, *sh = Py_None;
    int backlog = 100;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OOO|OOiOO:Listener", kwlist,
                                     &loop, &sock, &factory, &sslcontext,
                                     &server, &backlog, &hs, &sh)) {
        return NULL;
    }
    if (fl_loop_from_arg(type, loop) == NULL) {
        return NULL;
    }
    if (fl_loop_check_closed((FlLoop *)loop) < 0) {
        return NULL;
    }
    int fd = fl_transport_sock_fd(sock);
    if (fd < 0) {
        return NULL;
    }
    if (!fl_fd_is_open(fd)) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", fd);
        return NULL;
    }
    FlListener *l = (FlListener *)type->tp_alloc(type, 0);
    if (l == NULL) {
        return NULL;
    }
    l->loop = (FlLoop *)Py_NewRef(loop);
    l->sock = Py_NewRef(sock);
    l->factory = Py_NewRef(factory);
    l->sslcontext = Py_NewRef(PyObject_IsTrue(sslcontext) == 1 ? sslcontext : Py_None);
    PyErr_Clear();
    l->server = Py_NewRef(server);
    l->hs_timeout = Py_NewRef(hs);
    l->sh_timeout = Py_NewRef(sh);
    l->backlog = backlog > 0 ? backlog : 1;
    l->stopped = 1;
    l->accept = PyObject_GetAttrString(sock, "_accept");
    l->context = PyContext_CopyCurrent();
    socklen_t len = sizeof(int);
    if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &l->family, &len) < 0
            || (len = sizeof(int), getsockopt(fd, SOL_SOCKET, SO_TYPE, &l->type, &len)) < 0
            || (len = sizeof(int), getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &l->proto, &len)) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        Py_DECREF(l);
        return NULL;
    }
    if (l->accept == NULL || l->context == NULL) {
        Py_DECREF(l);
        return NULL;
    }
    ev_io_init(&l->w, accept_cb, fd, EV_READ);
    l->w.data = l;
    ev_prepare_init(&l->guard, guard_cb);
    l->guard.data = l;
    (void)fl_socket_prove(sock, fd);
    return (PyObject *)l;
}

static PyObject *
listener_start(FlListener *l, PyObject *Py_UNUSED(ignored))
{
    if (fl_loop_check_closed(l->loop) < 0) {
        return NULL;
    }
    l->stopped = 0;
    if (!listener_fd_ok(l)) {
        errno = EBADF;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    listener_watch(l);
    Py_RETURN_NONE;
}

/* Stops accepting; `paused` only until _resume() (EMFILE backoff). */
static PyObject *
listener_pause(FlListener *l, PyObject *Py_UNUSED(ignored))
{
    listener_stop_watch(l);
    Py_RETURN_NONE;
}

static PyObject *
listener_resume(FlListener *l, PyObject *Py_UNUSED(ignored))
{
    if (!l->stopped) {
        listener_watch(l);
    }
    Py_RETURN_NONE;
}

static PyObject *
listener_stop(FlListener *l, PyObject *Py_UNUSED(ignored))
{
    l->stopped = 1;
    listener_stop_watch(l);
    Py_RETURN_NONE;
}

static int
listener_traverse(FlListener *l, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(l));
    Py_VISIT(l->loop);
    Py_VISIT(l->sock);
    Py_VISIT(l->accept);
    Py_VISIT(l->factory);
    Py_VISIT(l->sslcontext);
    Py_VISIT(l->server);
    Py_VISIT(l->hs_timeout);
    Py_VISIT(l->sh_timeout);
    Py_VISIT(l->context);
    Py_VISIT(l->last_sockname);
    return 0;
}

static int
listener_clear(FlListener *l)
{
    l->stopped = 1;
    listener_stop_watch(l);
    Py_CLEAR(l->sock);
    Py_CLEAR(l->accept);
    Py_CLEAR(l->factory);
    Py_CLEAR(l->sslcontext);
    Py_CLEAR(l->server);
    Py_CLEAR(l->hs_timeout);
    Py_CLEAR(l->sh_timeout);
    Py_CLEAR(l->context);
    Py_CLEAR(l->last_sockname);
    Py_CLEAR(l->last_peer_host);
    return 0;
}

static void
listener_dealloc(FlListener *l)
{
    PyTypeObject *tp = Py_TYPE(l);
    PyObject_GC_UnTrack(l);
    listener_clear(l);
    Py_CLEAR(l->loop);
    tp->tp_free(l);
    Py_DECREF(tp);
}

static PyMethodDef listener_methods[] = {
    {"start", (PyCFunction)listener_start, METH_NOARGS, NULL},
    {"stop", (PyCFunction)listener_stop, METH_NOARGS, NULL},
    {"_pause", (PyCFunction)listener_pause, METH_NOARGS, NULL},
    {"_resume", (PyCFunction)listener_resume, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef listener_members[] = {
    FL_MEMBER("sock", T_OBJECT, FlListener, sock),
    FL_MEMBER("protocol_factory", T_OBJECT, FlListener, factory),
    FL_MEMBER("sslcontext", T_OBJECT, FlListener, sslcontext),
    FL_MEMBER("server", T_OBJECT, FlListener, server),
    FL_MEMBER("ssl_handshake_timeout", T_OBJECT, FlListener, hs_timeout),
    FL_MEMBER("ssl_shutdown_timeout", T_OBJECT, FlListener, sh_timeout),
    {NULL, 0, 0, 0, NULL},
};

static PyType_Slot listener_slots[] = {
    {Py_tp_new, listener_tp_new},
    {Py_tp_dealloc, listener_dealloc},
    {Py_tp_traverse, listener_traverse},
    {Py_tp_clear, listener_clear},
    {Py_tp_methods, listener_methods},
    {Py_tp_members, listener_members},
    {0, NULL},
};

static PyType_Spec listener_spec = {
    .name = "fastloop.Listener",
    .basicsize = sizeof(FlListener),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = listener_slots,
};

int
fl_server_module_init(PyObject *module)
{
    socket_type = fl_import_attr("socket", "socket");
    if (socket_type == NULL) {
        return -1;
    }
    PyObject *t = PyType_FromModuleAndSpec(module, &listener_spec, NULL);
    if (t == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, "Listener", t);
    Py_DECREF(t);
    return r;
}
