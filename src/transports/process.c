/* ChildWatcher: one child process's exit, noticed through its pidfd.

   A pidfd (os.pidfd_open) turns readable when its process exits. One ev_io
   watcher on it replaces asyncio's SIGCHLD handler and child watchers:
   nothing process-wide is installed, so children spawned elsewhere
   (subprocess, os.fork) are never reaped by us, and the loop may run in
   any thread. When the watcher fires it reaps exactly its child through the
   pidfd (waitid(P_PIDFD, WNOHANG)), stops, closes the pidfd and calls
   callback(returncode) (returncode None if someone else reaped the child
   first; the caller then asks Popen, which did). Nothing here ever blocks:
   a readiness that finds no exited child keeps watching, and if libev
   cannot watch the pidfd at all (EV_ERROR: epoll_ctl refused it) while the
   child runs on, fallback() is called instead (the Python side then waits
   in a thread). callback and fallback run in the context that was current
   when the watcher was made, the caller of subprocess_exec(): asyncio's
   pidfd watcher (3.12+) runs them from a reader Handle made there.
   The Python side (fastloop/_pipes.py) keeps the watcher alive until then,
   and cancels it when the loop closes. */
#include "transports/process.h"
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "core/loopcore.h"
#include "core/errors.h"
#include "core/fd.h"

#ifndef P_PIDFD
#define P_PIDFD 3       /* Linux 5.4; <linux/wait.h> */
#endif

typedef struct {
    PyObject_HEAD
    FlLoop *loop;
    PyObject *callback;
    PyObject *fallback;         /* NULL or None: report the failure instead */
    PyObject *context;
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

/* waitpid(pid, WNOHANG): 1 reaped (*code as Popen.returncode has it:
   -signal if killed), 0 still running, -1 reaped by someone else. */
static int
reap_pid(pid_t pid, int *code)
{
    int status = 0;
    pid_t r;
    do {
        r = waitpid(pid, &status, WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r == 0) {
        return 0;
    }
    if (r < 0) {
        return -1;      /* ECHILD: reaped already, by Popen.poll() */
    }
    *code = WIFSIGNALED(status) ? -WTERMSIG(status) : WEXITSTATUS(status);
    return 1;
}

/* The same through the pidfd, never blocking (the pid cannot have been
   reused: it is our unreaped child, or reaped through this very pidfd). */
static int
reap(FlChildWatcher *c, int *code)
{
    siginfo_t info;
    int r;
    do {
        memset(&info, 0, sizeof(info));
        r = waitid((idtype_t)P_PIDFD, (id_t)c->pidfd, &info, WEXITED | WNOHANG);
    } while (r < 0 && errno == EINTR);
    if (r < 0) {
        if (errno == ECHILD) {
            return -1;      /* reaped already, by Popen.poll() */
        }
        /* EINVAL: Linux < 5.4, no P_PIDFD; anything else: ask by pid. */
        return reap_pid(c->pid, code);
    }
    if (info.si_pid == 0) {
        return 0;       /* not exited (yet): a spurious readiness */
    }
    *code = info.si_code == CLD_EXITED ? info.si_status : -info.si_status;
    return 1;
}

/* A failed callback: SystemExit and KeyboardInterrupt leave the loop from
   the ready queue; anything else goes to the loop's exception handler. */
static void
report_error(FlChildWatcher *c)
{
    if (fl_err_is_fatal()) {
        fl_err_stash_fatal(c->loop);
        return;
    }
    PyObject *exc = fl_err_get_raised();
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

/* fn(arg) (arg NULL: fn()) in the watcher's context; errors reported. */
static void
call_in_context(FlChildWatcher *c, PyObject *fn, PyObject *arg)
{
    if (PyContext_Enter(c->context) < 0) {
        report_error(c);
        return;
    }
    PyObject *r = arg ? PyObject_CallOneArg(fn, arg) : PyObject_CallNoArgs(fn);
    PyObject *pending = r == NULL ? fl_err_get_raised() : NULL;
    Py_XDECREF(r);
    if (PyContext_Exit(c->context) < 0) {
        PyErr_WriteUnraisable((PyObject *)c);
    }
    if (pending != NULL) {
        fl_err_set_raised(pending);
        report_error(c);
    }
}

/* Reaped: stop, and hand the code over (None: reaped elsewhere). */
static void
finish(FlChildWatcher *c, int reaped, int code)
{
    watcher_stop(c);
    PyObject *callback = c->callback;
    c->callback = NULL;
    Py_CLEAR(c->fallback);
    if (callback == NULL) {
        return;
    }
    PyObject *arg = reaped > 0 ? PyLong_FromLong(code) : Py_NewRef(Py_None);
    if (arg == NULL) {
        report_error(c);
    }
    else {
        call_in_context(c, callback, arg);
        Py_DECREF(arg);
    }
    Py_DECREF(callback);
}

/* libev could not watch the pidfd and stopped the watcher: the child may
   well be running on. Never wait for it here (that would block the loop,
   with the GIL held): reap it if it is done, else fall back. */
/* Is fd still the pidfd of pid? (/proc/self/fdinfo says "Pid:\t<pid>".)
   If it was closed behind our back, its number may be anyone's now. */
static int
pidfd_is_ours(int fd, pid_t pid)
{
    char path[64], line[128];
    snprintf(path, sizeof(path), "/proc/self/fdinfo/%d", fd);
    FILE *f = fopen(path, "re");
    if (f == NULL) {
        return 0;
    }
    int ours = 0;
    while (fgets(line, sizeof(line), f) != NULL) {
        long p;
        if (sscanf(line, "Pid: %ld", &p) == 1) {
            ours = p == (long)pid;
            break;
        }
    }
    fclose(f);
    return ours;
}

static void
watch_failed(FlChildWatcher *c)
{
    int err = fl_fd_watch_errno(c->pidfd);
    if (c->pidfd >= 0 && !pidfd_is_ours(c->pidfd, c->pid)) {
        c->pidfd = -1;      /* not ours to close any more */
    }
    int code = 0;
    int reaped = reap_pid(c->pid, &code);
    if (reaped != 0) {
        finish(c, reaped, code);
        return;
    }
    watcher_stop(c);
    PyObject *fallback = c->fallback;
    c->fallback = NULL;
    if (fallback != NULL && fallback != Py_None) {
        Py_CLEAR(c->callback);
        call_in_context(c, fallback, NULL);
        Py_DECREF(fallback);
        return;
    }
    Py_XDECREF(fallback);
    Py_CLEAR(c->callback);
    errno = err;
    PyErr_SetFromErrno(PyExc_OSError);
    report_error(c);
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
    if (revents & EV_ERROR) {
        watch_failed(c);
    }
    else {
        int code = 0;
        int reaped = reap(c, &code);
        if (reaped != 0) {
            finish(c, reaped, code);
        }
    }
    Py_DECREF(c);
}

static PyObject *
watcher_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"loop", "pidfd", "pid", "callback", "fallback",
                             NULL};
    PyObject *loop, *callback, *fallback = Py_None;
    int pidfd, pid;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "OiiO|O:ChildWatcher", kwlist,
                                     &loop, &pidfd, &pid, &callback,
                                     &fallback)) {
        return NULL;
    }
    if (fl_loop_from_arg(type, loop) == NULL) {
        return NULL;
    }
    if (!PyCallable_Check(callback)
            || (fallback != Py_None && !PyCallable_Check(fallback))) {
        PyErr_SetString(PyExc_TypeError, "callback must be callable");
        return NULL;
    }
    if (pid <= 0) {
        PyErr_Format(PyExc_ValueError, "invalid pid: %d", pid);
        return NULL;
    }
    if (pidfd < 0 || !fl_fd_is_open(pidfd)) {
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
    c->pidfd = -1;
    c->loop = (FlLoop *)Py_NewRef(loop);
    c->callback = Py_NewRef(callback);
    c->fallback = Py_NewRef(fallback);
    c->pid = (pid_t)pid;
    c->context = PyContext_CopyCurrent();
    /* Python code ran (the allocations may collect): check again. */
    if (c->context == NULL || fl_loop_check_closed(c->loop) < 0
            || !fl_fd_is_open(pidfd)) {
        if (c->context != NULL && !PyErr_Occurred()) {
            PyErr_Format(PyExc_ValueError, "Invalid file descriptor: %d", pidfd);
        }
        Py_DECREF(c);
        return NULL;
    }
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
    Py_CLEAR(c->fallback);
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
    Py_VISIT(c->fallback);
    Py_VISIT(c->context);
    return 0;
}

static int
watcher_clear(FlChildWatcher *c)
{
    Py_CLEAR(c->callback);
    Py_CLEAR(c->fallback);
    Py_CLEAR(c->context);
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
