/* ChildWatcher: one child process's exit, noticed through its pidfd.

   A pidfd (os.pidfd_open) turns readable when its process exits. One ev_io
   watcher on it replaces asyncio's SIGCHLD handler and child watchers:
   nothing process-wide is installed, so children spawned elsewhere
   (subprocess, os.fork) are never reaped by us, and the loop may run in
   any thread. When the watcher fires it stops, closes the pidfd, reaps
   exactly its pid with waitpid(pid, WNOHANG) and calls callback(returncode)
   (returncode None if someone else reaped the child first; the caller then
   asks Popen, which did). The Python side (fastloop/_pipes.py) keeps the
   watcher alive until then, and cancels it when the loop closes. */
#include "process.h"
#include <errno.h>
#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>
#include "module.h"
#include "loop.h"

typedef struct {
    PyObject_HEAD
    FlLoop *loop;
    PyObject *callback;
    ev_io w;
    int pidfd;                  /* ours to close; -1 once closed */
    pid_t pid;
} FlChildWatcher;

static void
watcher_stop(FlChildWatcher *c)
{
    if (c->loop != NULL && c->loop->ev != NULL && ev_is_active(&c->w)) {
        ev_io_stop(c->loop->ev, &c->w);
    }
    if (c->pidfd >= 0) {
        close(c->pidfd);
        c->pidfd = -1;
    }
}

/* The child's exit code as Popen.returncode has it: -signal if killed. */
static PyObject *
reap(pid_t pid)
{
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        /* The pidfd said it exited; the zombie is a moment away. */
        do {
            r = waitpid(pid, &status, 0);
        } while (r < 0 && errno == EINTR);
    }
    if (r < 0) {
        Py_RETURN_NONE;     /* ECHILD: reaped already, by Popen.poll() */
    }
    if (WIFSIGNALED(status)) {
        return PyLong_FromLong(-WTERMSIG(status));
    }
    return PyLong_FromLong(WEXITSTATUS(status));
}

static int
reraise_entry(FlLoop *loop, fl_ready_item *item)
{
    fl_err_set_raised(Py_NewRef(item->arg));
    return -1;
}

/* A failed callback: SystemExit and KeyboardInterrupt leave the loop from
   the ready queue; anything else goes to the loop's exception handler. */
static void
report_error(FlChildWatcher *c)
{
    int fatal = PyErr_ExceptionMatches(PyExc_SystemExit)
        || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt);
    PyObject *exc = fl_err_get_raised();
    if (fatal) {
        if (fl_ready_push(&c->loop->ready, reraise_entry, exc) < 0) {
            PyErr_WriteUnraisable(exc);
        }
        Py_DECREF(exc);
        return;
    }
    PyObject *ctx = Py_BuildValue("{sssO}", "message",
                                  "Exception in child process exit callback",
                                  "exception", exc);
    PyObject *r = ctx ? PyObject_CallMethod((PyObject *)c->loop,
                                            "call_exception_handler", "O", ctx)
                      : NULL;
    if (r == NULL) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    Py_XDECREF(r);
    Py_XDECREF(ctx);
    Py_DECREF(exc);
}

static void
exited_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlChildWatcher *c = w->data;
    c->loop->io_events++;
    if (PyErr_Occurred()) {
        return;     /* an earlier callback failed; the run loop raises it */
    }
    Py_INCREF(c);
    watcher_stop(c);
    PyObject *callback = c->callback;
    c->callback = NULL;
    if (callback != NULL) {
        PyObject *code = reap(c->pid);
        PyObject *r = code ? PyObject_CallOneArg(callback, code) : NULL;
        Py_XDECREF(code);
        if (r == NULL) {
            report_error(c);
        }
        Py_XDECREF(r);
        Py_DECREF(callback);
    }
    Py_DECREF(c);
}

static PyObject *
watcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "pidfd", "pid", "callback", NULL};
    PyObject *loop, *callback;
    int pidfd, pid;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiO:ChildWatcher", kwlist,
                                     &loop, &pidfd, &pid, &callback)) {
        return NULL;
    }
    fl_state *st = fl_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->loop_type)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a fastloop loop");
        return NULL;
    }
    if (!PyCallable_Check(callback)) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (pid <= 0) {
        PyErr_Format(PyExc_ValueError, "invalid pid: %d", pid);
        return NULL;
    }
    if (pidfd < 0 || fcntl(pidfd, F_GETFD) < 0) {
        PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", pidfd);
        return NULL;
    }
    if (fl_loop_check_closed((FlLoop *)loop) < 0) {
        return NULL;
    }
    FlChildWatcher *c = (FlChildWatcher *)type->tp_alloc(type, 0);
    if (c == NULL) {
        return NULL;
    }
    c->loop = (FlLoop *)Py_NewRef(loop);
    c->callback = Py_NewRef(callback);
    c->pid = (pid_t)pid;
    /* Taken only now: every error above leaves the pidfd the caller's. */
    c->pidfd = pidfd;
    ev_io_init(&c->w, exited_cb, pidfd, EV_READ);
    c->w.data = c;
    ev_io_start(c->loop->ev, &c->w);
    return (PyObject *)c;
}

/* Stops watching and closes the pidfd; the callback will not run. */
static PyObject *
watcher_cancel(FlChildWatcher *c, PyObject *Py_UNUSED(ignored))
{
    watcher_stop(c);
    Py_CLEAR(c->callback);
    Py_RETURN_NONE;
}

static PyObject *
watcher_get_pid(FlChildWatcher *c, void *closure)
{
    return PyLong_FromLong((long)c->pid);
}

static PyObject *
watcher_get_active(FlChildWatcher *c, void *closure)
{
    return PyBool_FromLong(c->pidfd >= 0);
}

static int
watcher_traverse(FlChildWatcher *c, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(c));
    Py_VISIT(c->loop);
    Py_VISIT(c->callback);
    return 0;
}

static int
watcher_clear(FlChildWatcher *c)
{
    Py_CLEAR(c->callback);
    return 0;
}

static void
watcher_dealloc(FlChildWatcher *c)
{
    PyTypeObject *tp = Py_TYPE(c);
    PyObject_GC_UnTrack(c);
    watcher_stop(c);
    watcher_clear(c);
    Py_CLEAR(c->loop);
    tp->tp_free(c);
    Py_DECREF(tp);
}

static PyMethodDef watcher_methods[] = {
    {"cancel", (PyCFunction)watcher_cancel, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyGetSetDef watcher_getset[] = {
    {"pid", (getter)watcher_get_pid, NULL, NULL, NULL},
    {"active", (getter)watcher_get_active, NULL, NULL, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyType_Slot watcher_slots[] = {
    {Py_tp_new, watcher_new},
    {Py_tp_dealloc, watcher_dealloc},
    {Py_tp_traverse, watcher_traverse},
    {Py_tp_clear, watcher_clear},
    {Py_tp_methods, watcher_methods},
    {Py_tp_getset, watcher_getset},
    {0, NULL},
};

static PyType_Spec watcher_spec = {
    .name = "fastloop.ChildWatcher",
    .basicsize = sizeof(FlChildWatcher),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC,
    .slots = watcher_slots,
};

int
fl_process_module_init(PyObject *module)
{
    PyObject *t = PyType_FromModuleAndSpec(module, &watcher_spec, NULL);
    if (t == NULL) {
        return -1;
    }
    int r = PyModule_AddObjectRef(module, "ChildWatcher", t);
    Py_DECREF(t);
    return r;
}
