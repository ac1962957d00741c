#include "io.h"
#include "loop.h"
#include "handle.h"
#include "fdowner.h"
#include <fcntl.h>
#include <sys/stat.h>

int
fl_io_fileobj_to_fd(PyObject *fileobj)
{
    long fd;
    if (PyLong_Check(fileobj)) {
        fd = PyLong_AsLong(fileobj);
    }
    else {
        PyObject *res = PyObject_CallMethod(fileobj, "fileno", NULL);
        if (res == NULL || !PyLong_Check(res)) {
            if (res == NULL && !PyErr_ExceptionMatches(PyExc_AttributeError)
                    && !PyErr_ExceptionMatches(PyExc_TypeError)
                    && !PyErr_ExceptionMatches(PyExc_ValueError)) {
                return -1;
            }
            Py_XDECREF(res);
            PyErr_Clear();
            PyErr_Format(PyExc_ValueError, "Invalid file object: %R", fileobj);
            return -1;
        }
        fd = PyLong_AsLong(res);
        Py_DECREF(res);
    }
    return fl_io_fd_from_long(fd);
}

int
fl_io_fd_from_long(long fd)
{
    if (fd == -1 && PyErr_Occurred()) {
        return -1;
    }
    if (fd < 0 || fd > INT_MAX) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %ld", fd);
        return -1;
    }
    return (int)fd;
}

/* What epoll would say about the fd, checked before libev sees it: libev
   aborts on some bad fds, asyncio raises. */
static int
check_fd_pollable(int fd)
{
    struct stat st;
    if (fcntl(fd, F_GETFD) == -1 || fstat(fd, &st) == -1) {
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
    if (ev_is_active(&w->watcher)) {
        if (w->watcher.events == events && !rearm) {
            return;
        }
        ev_io_stop(loop->ev, &w->watcher);
    }
    if (events) {
        ev_io_set(&w->watcher, w->watcher.fd, events);
        ev_io_start(loop->ev, &w->watcher);
    }
}

static void
forget_watch(FlLoop *loop, int fd)
{
    fl_fd_watch *w = loop->fds.by_fd[fd];
    if (ev_is_active(&w->watcher)) {
        ev_io_stop(loop->ev, &w->watcher);
    }
    loop->fds.by_fd[fd] = NULL;
    loop->fds.active--;
    PyObject *reader = w->reader, *writer = w->writer;
    PyMem_Free(w);
    Py_XDECREF(reader);
    Py_XDECREF(writer);
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
        /* libev found the fd closed under it and stopped the watcher. Like
           asyncio's epoll, forget about it silently; remove_* still work. */
        return;
    }
    PyObject *handles[2] = {
        (revents & EV_READ) ? w->reader : NULL,
        (revents & EV_WRITE) ? w->writer : NULL,
    };
    for (int i = 0; i < 2; i++) {
        PyObject *h = handles[i];
        if (h == NULL) {
            continue;
        }
        if (FL_HANDLE(h)->cancelled) {
            /* asyncio drops a cancelled reader/writer when its fd fires. */
            PyObject **slot = i == 0 ? &w->reader : &w->writer;
            *slot = NULL;
            int empty = w->reader == NULL && w->writer == NULL;
            if (empty) {
                forget_watch(loop, fd);
            }
            else {
                update_watcher(loop, w, 0);
            }
            Py_DECREF(h);
            if (empty) {
                return;
            }
            continue;
        }
        if (fl_ready_push(&loop->ready, fl_handle_run_entry, h) < 0) {
            return;
        }
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
    int fd = fl_io_fileobj_to_fd(args[0]);
    if (fd < 0 || fl_fdowner_check(loop, fd, args[0]) < 0
            || check_fd_pollable(fd) < 0) {
        return NULL;
    }
    PyObject *h = fl_handle_new(loop, 0, args[1], args + 2, nargs - 2, NULL);
    if (h == NULL) {
        return NULL;
    }
    fl_fd_watch *w = get_watch(loop, fd);
    if (w == NULL) {
        Py_DECREF(h);
        return NULL;
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
    int fd = fl_io_fileobj_to_fd(fileobj);
    if (fd < 0 || fl_fdowner_check(loop, fd, fileobj) < 0) {
        return NULL;
    }
    if (fd >= loop->fds.size || loop->fds.by_fd[fd] == NULL) {
        Py_RETURN_FALSE;
    }
    fl_fd_watch *w = loop->fds.by_fd[fd];
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
        }
    }
    return 0;
}
