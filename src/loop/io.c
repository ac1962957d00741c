#include "loop/io.h"
#include "core/fd.h"
#include "core/loopcore.h"
#include "callbacks/handle.h"
#include "loop/fdowner.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

/* What epoll would say about the fd, checked before libev sees it: libev
   aborts on some bad fds, asyncio raises. */
static int
check_fd_pollable(int fd)
{
    struct stat st;
    if (!fl_fd_is_open(fd) || fstat(fd, &st) == -1) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
        errno = EPERM;      /* epoll_ctl refuses regular files */
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    return 0;
}

/* `rearm` re-registers the fd with the kernel even when the events are
   unchanged: after add_*(), the fd may be a new file that reuses the number
   of a closed one, which epoll has silently forgotten. */
static void
update_watcher(FlLoop *loop, fl_fd_watch *w, int rearm)
{
    int events = (w->reader ? EV_READ : 0) | (w->writer ? EV_WRITE : 0);
    if (ev_is_active(&w->watcher) && w->watcher.events == events && !rearm) {
        return;
    }
    /* Also when inactive: it may be pending (EV_ERROR), and a pending
       watcher must not be changed. */
    ev_io_stop(loop->ev, &w->watcher);
    if (events) {
        ev_io_set(&w->watcher, w->watcher.fd, events);
        ev_io_start(loop->ev, &w->watcher);
    }
}

static fl_fd_watch *
lookup_watch(FlLoop *loop, int fd)
{
    return (fd >= 0 && fd < loop->fds.size) ? loop->fds.by_fd[fd] : NULL;
}

/* Stops the watcher of fd, frees it and releases its references (which may
   run Python code: nothing of the watch is used after). */
static void
forget_watch(FlLoop *loop, int fd)
{
    fl_fd_watch *w = loop->fds.by_fd[fd];
    if (loop->ev != NULL) {
        /* Even when inactive: libev may hold it pending (EV_ERROR after a
           failed epoll_ctl stops it), and ev_io_stop clears that, or libev
           would call back into freed memory in this very iteration. */
        ev_io_stop(loop->ev, &w->watcher);
    }
    loop->fds.by_fd[fd] = NULL;
    loop->fds.active--;
    PyObject *reader = w->reader, *writer = w->writer, *fileobj = w->fileobj;
    PyMem_Free(w);
    Py_XDECREF(reader);
    Py_XDECREF(writer);
    Py_XDECREF(fileobj);
}

/* Removes fd's registration with both its handles, cancelled. */
static void
drop_watch(FlLoop *loop, int fd)
{
    fl_fd_watch *w = loop->fds.by_fd[fd];
    PyObject *reader = w->reader, *writer = w->writer;
    w->reader = w->writer = NULL;
    forget_watch(loop, fd);
    if (reader != NULL) {
        fl_handle_cancel(reader);
        Py_DECREF(reader);
    }
    if (writer != NULL) {
        fl_handle_cancel(writer);
        Py_DECREF(writer);
    }
}

/* The fd whose registration was made with this very object: a closed
   socket's fileno() says -1, but remove_*(sock) must still find it, as
   asyncio's selector does. -1 if none. */
static int
find_by_identity(FlLoop *loop, PyObject *fileobj)
{
    for (int fd = 0; fd < loop->fds.size; fd++) {
        fl_fd_watch *w = loop->fds.by_fd[fd];
        if (w != NULL && w->fileobj == fileobj) {
            return fd;
        }
    }
    return -1;
}

int
fl_io_drop_stale(FlLoop *loop, int fd, PyObject *fileobj)
{
    fl_fd_watch *w = lookup_watch(loop, fd);
    if (w == NULL || w->fileobj == NULL || w->fileobj == fileobj
            || PyLong_Check(w->fileobj)) {
        return 0;       /* nothing, the same object, or a bare number */
    }
    PyObject *old = Py_NewRef(w->fileobj);
    int now = fl_fd_from_fileobj(old);
    int stale = now >= 0 ? now != fd : 0;
    if (now < 0) {
        if (!PyErr_ExceptionMatches(PyExc_Exception)) {
            Py_DECREF(old);
            return -1;
        }
        /* Closed (fileno() is -1 or raises ValueError): stale. Any other
           error: no way to tell; keep it. */
        stale = PyErr_ExceptionMatches(PyExc_ValueError);
        PyErr_Clear();
    }
    /* fileno() was Python code: look again. */
    w = lookup_watch(loop, fd);
    if (stale && w != NULL && w->fileobj == old) {
        drop_watch(loop, fd);
    }
    Py_DECREF(old);
    return 0;
}

/* Queues the handles whose events came. A cancelled one is dropped from
   the registration instead (as asyncio does when its fd fires); releasing
   it may run Python code (its context's finalizers) that adds or removes
   watchers and frees this watch, so that comes last, once nothing of the
   watch or of the other handle is used any more (issue #10, S1). */
/* The fd is open but epoll refuses it: the loop's exception handler gets
   the OSError, and the registration goes, so that a later add_*() after
   the cause is gone starts afresh. */
static void
report_unwatchable(FlLoop *loop, fl_fd_watch *w, int fd)
{
    int err = fl_fd_watch_errno(fd);
    if (err == EBADF || err == EIO || err == 0) {
        return;
    }
    PyObject *exc = PyObject_CallFunction(PyExc_OSError, "is", err, strerror(err));
    PyObject *msg = PyUnicode_FromFormat(
        "cannot watch file descriptor %d for add_reader()/add_writer()", fd);
    PyObject *context = exc && msg
        ? Py_BuildValue("{sOsO}", "message", msg, "exception", exc) : NULL;
    Py_XDECREF(exc);
    Py_XDECREF(msg);
    PyObject *handle = w->reader ? w->reader : w->writer;
    if (context != NULL && handle != NULL
            && PyDict_SetItemString(context, "handle", handle) < 0) {
        Py_CLEAR(context);
    }
    drop_watch(loop, fd);
    if (context == NULL) {
        return;     /* the error stops the run loop */
    }
    PyObject *r = PyObject_CallMethod((PyObject *)loop, "call_exception_handler",
                                      "O", context);
    Py_DECREF(context);
    Py_XDECREF(r);  /* an error it lets out stops the run loop */
}

static void
io_cb(struct ev_loop *ev, ev_io *watcher, int revents)
{
    fl_fd_watch *w = (fl_fd_watch *)watcher;
    FlLoop *loop = w->loop;
    int fd = watcher->fd;
    loop->io_events++;
    if (PyErr_Occurred()) {
        return;     /* an earlier callback failed; the run loop raises it */
    }
    if (revents & EV_ERROR) {
        /* libev could not watch the fd and stopped the watcher. Closed
           under it: like asyncio's epoll, forget about it silently
           (remove_* still work). Refused (ENOSPC at the watch limit):
           asyncio's add_reader raises; here it is reported. */
        report_unwatchable(loop, w, fd);
        return;
    }
    PyObject *dropped[2] = {NULL, NULL};
    for (int i = 0; i < 2; i++) {
        PyObject **slot = i == 0 ? &w->reader : &w->writer;
        PyObject *h = *slot;
        if (h == NULL || !(revents & (i == 0 ? EV_READ : EV_WRITE))) {
            continue;
        }
        if (FL_HANDLE(h)->cancelled) {
            dropped[i] = h;         /* the slot's reference */
            *slot = NULL;
        }
        else if (fl_ready_push(&loop->ready, fl_handle_run_entry, h) < 0) {
            break;                  /* the error stops the run loop */
        }
    }
    if (dropped[0] != NULL || dropped[1] != NULL) {
        if (w->reader == NULL && w->writer == NULL) {
            forget_watch(loop, fd);
        }
        else {
            update_watcher(loop, w, 0);
        }
        Py_XDECREF(dropped[0]);
        Py_XDECREF(dropped[1]);
    }
}

static fl_fd_watch *
get_watch(FlLoop *loop, int fd)
{
    fl_fd_table *t = &loop->fds;
    if (fd >= t->size) {
        int size = t->size ? t->size : 64;
        while (size <= fd) {
            size *= 2;
        }
        fl_fd_watch **by_fd = PyMem_Realloc(t->by_fd, size * sizeof(*by_fd));
        if (by_fd == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        memset(by_fd + t->size, 0, (size - t->size) * sizeof(*by_fd));
        t->by_fd = by_fd;
        t->size = size;
    }
    if (t->by_fd[fd] == NULL) {
        fl_fd_watch *w = PyMem_Calloc(1, sizeof(*w));
        if (w == NULL) {
            PyErr_NoMemory();
            return NULL;
        }
        ev_io_init(&w->watcher, io_cb, fd, 0);
        w->loop = loop;
        t->by_fd[fd] = w;
        t->active++;
    }
    return t->by_fd[fd];
}

/* add_reader/add_writer. Everything that can run Python code (fileno(),
   the transport map and the stale registration check, the handle:
   allocation and the debug stack capture) comes first; then the loop is checked, and from there to
   the libev call only C runs (docs/NOTES.md, "Checks and Python code"). */
static PyObject *
add_handler(FlLoop *loop, PyObject *const *args, Py_ssize_t nargs,
            int writing, const char *method)
{
    if (nargs < 2) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing required positional argument(s): "
                     "'fd' and 'callback'", method);
        return NULL;
    }
    if (fl_loop_check_closed(loop) < 0) {
        return NULL;
    }
    PyObject *fileobj = args[0];
    int fd = fl_fd_from_fileobj(fileobj);
    /* The check also drops a registration of fd left by a closed object. */
    if (fd < 0 || fl_fdowner_check(loop, fd, fileobj) < 0) {
        return NULL;
    }
    PyObject *h = fl_handle_new(loop, 0, args[1], args + 2, nargs - 2, NULL);
    if (h == NULL) {
        return NULL;
    }
    if (loop->closed) {
        Py_DECREF(h);
        fl_loop_check_closed(loop);
        return NULL;
    }
    fl_fd_watch *w;
    if (check_fd_pollable(fd) < 0 || (w = get_watch(loop, fd)) == NULL) {
        Py_DECREF(h);
        return NULL;
    }
    if (w->fileobj == NULL) {
        w->fileobj = Py_NewRef(fileobj);
    }
    PyObject **slot = writing ? &w->writer : &w->reader;
    PyObject *old = *slot;
    *slot = h;
    update_watcher(loop, w, 1);
    if (old != NULL) {
        fl_handle_cancel(old);
        Py_DECREF(old);
    }
    Py_RETURN_NONE;
}

static PyObject *
remove_handler(FlLoop *loop, PyObject *fileobj, int writing)
{
    if (loop->closed) {
        Py_RETURN_FALSE;
    }
    int fd = fl_fd_from_fileobj(fileobj);
    if (fd < 0) {
        /* A closed socket (fileno() -1) or file: found by identity, or the
           error stands. */
        if (!PyErr_ExceptionMatches(PyExc_ValueError)
                || (fd = find_by_identity(loop, fileobj)) < 0) {
            return NULL;
        }
        PyErr_Clear();
    }
    else if (fl_fdowner_check(loop, fd, fileobj) < 0) {
        return NULL;
    }
    /* Python code ran (fileno(), the transport map): check again. */
    fl_fd_watch *w = loop->closed ? NULL : lookup_watch(loop, fd);
    if (w == NULL) {
        Py_RETURN_FALSE;
    }
    PyObject **slot = writing ? &w->writer : &w->reader;
    PyObject *old = *slot;
    if (old == NULL) {
        Py_RETURN_FALSE;
    }
    *slot = NULL;
    if (w->reader == NULL && w->writer == NULL) {
        forget_watch(loop, fd);
    }
    else {
        update_watcher(loop, w, 0);
    }
    fl_handle_cancel(old);
    Py_DECREF(old);
    Py_RETURN_TRUE;
}

PyObject *
fl_io_add_reader(FlLoop *loop, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    return add_handler(loop, args, nargs, 0, "add_reader");
}

PyObject *
fl_io_add_writer(FlLoop *loop, PyObject *const *args, Py_ssize_t nargs,
                 PyObject *kwnames)
{
    return add_handler(loop, args, nargs, 1, "add_writer");
}

PyObject *
fl_io_remove_reader(FlLoop *loop, PyObject *fileobj)
{
    return remove_handler(loop, fileobj, 0);
}

PyObject *
fl_io_remove_writer(FlLoop *loop, PyObject *fileobj)
{
    return remove_handler(loop, fileobj, 1);
}

void
fl_io_clear(FlLoop *loop)
{
    for (int fd = 0; fd < loop->fds.size; fd++) {
        if (loop->fds.by_fd[fd] != NULL) {
            forget_watch(loop, fd);
        }
    }
}

int
fl_io_traverse(fl_fd_table *table, visitproc visit, void *arg)
{
    for (int fd = 0; fd < table->size; fd++) {
        fl_fd_watch *w = table->by_fd[fd];
        if (w != NULL) {
            Py_VISIT(w->reader);
            Py_VISIT(w->writer);
            Py_VISIT(w->fileobj);
        }
    }
    return 0;
}
