#include "loop/loop.h"
#include "callbacks/handle.h"
#include "futures/future.h"
#include "futures/task.h"
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/eventfd.h>
#endif

/* asyncio's cap on one poll's timeout (base_events.MAXIMUM_SELECT_TIMEOUT). */
#define FL_MAX_POLL_TIMEOUT (24.0 * 3600.0)

/* While callbacks keep the loop busy and the last poll found nothing, the
   next non-blocking poll may wait this long. A poll is a syscall that costs
   as much as running a short callback; skipping it between quick iterations
   delays I/O by at most this, and never while I/O is arriving. */
#define FL_BUSY_POLL_INTERVAL 50e-6

double
fl_loop_time(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- libev glue ---- */

/* libev reports a failed system call here. For one-shot calls (epoll_wait)
   it then returns, and the run loop raises the error noted here as
   OSError: a loop that cannot poll must fail loudly, never abort().

   A few libev calls instead retry for as long as this callback returns:
   pipe()/eventfd() for its async/signal pipe, and epoll_create() when a
   forked child first runs an inherited loop. With no free descriptor they
   spun forever with the GIL held (issue #10, C7). fastloop keeps them out of
   reach rather than escaping from them (a longjmp out of libev would leave
   its state half-changed): it makes its wakeup eventfd itself (no ev_async,
   ev_signal or ev_child ever starts libev's pipe), asks for epoll alone so
   that a loop that cannot get one fails at ev_loop_new() instead of falling
   back to poll(), and in a forked child libev's epoll_fork() closes the old
   epoll before it makes the new one, so it needs no free descriptor. Should
   a retry loop be entered all the same (another thread of a forked child
   taking the descriptor between the close and epoll_create, or ENFILE), the
   retries are spaced out and, after a few seconds, the process stops with a
   fatal error that names the call instead of spinning unkillably. */
static _Thread_local int fl_syserr_errno;
static _Thread_local const char *fl_syserr_msg;
static _Thread_local unsigned int fl_syserr_repeats;

#define FL_SYSERR_MAX_REPEATS 3000      /* ~3 s of 1 ms pauses */

static void
fl_syserr_cb(const char *msg) EV_NOEXCEPT
{
    int err = errno ? errno : EIO;
    if (fl_syserr_msg == msg && fl_syserr_errno == err) {
        /* The same call failed again before the run loop saw the first
           failure: libev is retrying it. */
        if (++fl_syserr_repeats >= FL_SYSERR_MAX_REPEATS) {
            static char buf[200];
            snprintf(buf, sizeof(buf),
                     "fastloop: libev cannot recover from %s: %s",
                     msg, strerror(err));
            Py_FatalError(buf);
        }
        struct timespec pause = {0, 1000000};
        nanosleep(&pause, NULL);
    }
    else {
        fl_syserr_repeats = 0;
    }
    fl_syserr_errno = err;
    fl_syserr_msg = msg;
}

static int
raise_pending_syserr(void)
{
    if (fl_syserr_msg == NULL) {
        return 0;
    }
    errno = fl_syserr_errno;
    PyErr_SetFromErrnoWithFilename(PyExc_OSError, fl_syserr_msg);
    fl_syserr_msg = NULL;
    fl_syserr_repeats = 0;
    return -1;
}

/* ---- the wakeup descriptor ---- */

static void
close_wakeup_fds(FlLoop *self)
{
    if (self->ev != NULL) {
        ev_io_stop(self->ev, &self->wakeup);     /* clears a pending event too */
    }
    if (self->wakeup_wfd >= 0 && self->wakeup_wfd != self->wakeup_rfd) {
        close(self->wakeup_wfd);
    }
    if (self->wakeup_rfd >= 0) {
        close(self->wakeup_rfd);
    }
    self->wakeup_rfd = self->wakeup_wfd = -1;
    self->sleeping = 0;
    self->wake_pending = 0;
}

#ifndef __linux__
static int
set_nonblock_cloexec(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    return (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0
            || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) ? -1 : 0;
}
#endif

/* Makes the wakeup descriptor and starts its watcher; -1 with errno. No
   Python code runs here. */
static int
open_wakeup(FlLoop *self)
{
#ifdef __linux__
    int fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (fd < 0) {
        return -1;
    }
    self->wakeup_rfd = self->wakeup_wfd = fd;
#else
    int fds[2];
    if (pipe(fds) < 0) {
        return -1;
    }
    if (set_nonblock_cloexec(fds[0]) < 0 || set_nonblock_cloexec(fds[1]) < 0) {
        int err = errno;
        close(fds[0]);
        close(fds[1]);
        errno = err;
        return -1;
    }
    self->wakeup_rfd = fds[0];
    self->wakeup_wfd = fds[1];
#endif
    self->sleeping = 0;
    self->wake_pending = 0;
    ev_io_set(&self->wakeup, self->wakeup_rfd, EV_READ);
    ev_io_start(self->ev, &self->wakeup);
    return 0;
}

static void
write_wakeup(FlLoop *self)
{
    if (self->wake_pending || self->wakeup_wfd < 0) {
        return;
    }
    self->wake_pending = 1;
    int saved = errno;
    uint64_t one = 1;
    ssize_t r;
    do {
        r = write(self->wakeup_wfd, &one, sizeof(one));
    } while (r < 0 && errno == EINTR);
    /* EAGAIN: it is full of wakeups already. */
    errno = saved;
}

void
fl_loop_wakeup(FlLoop *self)
{
    /* A loop that is not sleeping checks its ready queue before it polls
       again (and in release_gil, for what was queued meanwhile). */
    if (self->sleeping) {
        write_wakeup(self);
    }
}

static void
wakeup_cb(struct ev_loop *ev, ev_io *w, int revents)
{
    FlLoop *self = ev_userdata(ev);
    /* Waking the poll is the point; count it so the next poll is not skipped. */
    self->io_events++;
    self->wake_pending = 0;
    uint64_t buf[8];
    int saved = errno;
    while (read(w->fd, buf, sizeof(buf)) > 0) {
#ifdef __linux__
        break;      /* one read empties an eventfd */
#endif
    }
    errno = saved;
}

/* The GIL is released only around a poll that may sleep: libev calls these
   for every poll, including the non-blocking ones. */
static void
release_gil(struct ev_loop *ev) EV_NOEXCEPT
{
    FlLoop *self = ev_userdata(ev);
    if (self->poll_may_block) {
        self->sleeping = 1;
        if (self->ready.count || self->stopping) {
            /* Queued (or stopped) since run_once() decided to sleep, by
               Python code that ran inside ev_run or a thread it let in:
               don't sleep. */
            write_wakeup(self);
        }
        self->released_tstate = PyEval_SaveThread();
    }
}

static void
acquire_gil(struct ev_loop *ev) EV_NOEXCEPT
{
    FlLoop *self = ev_userdata(ev);
    if (self->released_tstate != NULL) {
        PyThreadState *ts = self->released_tstate;
        self->released_tstate = NULL;
        PyEval_RestoreThread(ts);
        self->sleeping = 0;
    }
}

static void
poll_timeout_cb(struct ev_loop *ev, ev_timer *w, int revents)
{
}

/* ---- checks shared by the methods ---- */

static int
check_callback(FlLoop *self, PyObject *callback, const char *method)
{
    PyObject *helper = self->state->helper_check_callback;
    if (helper == NULL) {
        return 0;
    }
    PyObject *name = PyUnicode_FromString(method);
    if (name == NULL) {
        return -1;
    }
    PyObject *r = PyObject_CallFunctionObjArgs(helper, callback, name, NULL);
    Py_DECREF(name);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* call_soon(callback, *args, context=None) and friends: the only keyword. */
static int
parse_context_kw(PyObject *const *kwvalues, PyObject *kwnames,
                 const char *method, PyObject **context)
{
    *context = NULL;
    if (kwnames == NULL) {
        return 0;
    }
    Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
    for (Py_ssize_t i = 0; i < nkw; i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (!PyUnicode_Check(key)
                || PyUnicode_CompareWithASCIIString(key, "context") != 0) {
            PyErr_Format(PyExc_TypeError,
                         "%s() got an unexpected keyword argument '%S'",
                         method, key);
            return -1;
        }
        *context = kwvalues[i];
    }
    return 0;
}

static int
require_callback_arg(Py_ssize_t nargs, Py_ssize_t needed, const char *method,
                     const char *names)
{
    if (nargs < needed) {
        PyErr_Format(PyExc_TypeError,
                     "%s() missing required positional argument(s): %s",
                     method, names);
        return -1;
    }
    return 0;
}

/* ---- scheduling ---- */

static PyObject *
loop_call_soon(FlLoop *self, PyObject *const *args, Py_ssize_t nargsf,
               PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_context_kw(args + nargs, kwnames, "call_soon", &context) < 0
            || require_callback_arg(nargs, 1, "call_soon", "'callback'") < 0
            || fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->debug && (fl_loop_check_thread(self) < 0
                        || check_callback(self, args[0], "call_soon") < 0)) {
        return NULL;
    }
    return fl_handle_schedule(self, FL_HANDLE_PLAIN, args, nargs, context);
}

static PyObject *
loop_call_soon_threadsafe(FlLoop *self, PyObject *const *args,
                          Py_ssize_t nargsf, PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_context_kw(args + nargs, kwnames, "call_soon_threadsafe",
                         &context) < 0
            || require_callback_arg(nargs, 1, "call_soon_threadsafe",
                                    "'callback'") < 0
            || fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->debug
            && check_callback(self, args[0], "call_soon_threadsafe") < 0) {
        return NULL;
    }
    /* Python code ran since the closed check above (and may have let the
       thread that closes the loop in): fl_handle_schedule checks again, and
       nothing but C runs between its check and the wakeup. */
    PyObject *h = fl_handle_schedule(self, FL_HANDLE_THREADSAFE, args, nargs,
                                     context);
    if (h != NULL) {
        fl_loop_wakeup(self);
    }
    return h;
}

static PyObject *
schedule_at(FlLoop *self, double when, PyObject *const *args,
            Py_ssize_t nargs, PyObject *context)
{
    if (fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (isnan(when)) {
        /* A NaN deadline cannot be ordered: it would wedge the timer heap
           and the poll timeout (asyncio fails later, inside the loop). */
        PyErr_SetString(PyExc_ValueError, "the deadline must not be NaN");
        return NULL;
    }
    if (self->debug && (fl_loop_check_thread(self) < 0
                        || check_callback(self, args[0], "call_at") < 0)) {
        return NULL;
    }
    PyObject *t = fl_handle_new(self, FL_HANDLE_TIMER, args[0], args + 1, nargs - 1, context);
    if (t == NULL || fl_loop_recheck_closed(self, t) < 0) {
        return NULL;
    }
    FL_TIMER(t)->when = when;
    if (fl_timers_push(&self->timers, t) < 0) {
        Py_DECREF(t);
        return NULL;
    }
    return t;
}

static PyObject *
loop_call_later(FlLoop *self, PyObject *const *args, Py_ssize_t nargsf,
                PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_context_kw(args + nargs, kwnames, "call_later", &context) < 0
            || require_callback_arg(nargs, 2, "call_later",
                                    "'delay' and 'callback'") < 0) {
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "delay must not be None");
        return NULL;
    }
    double delay = PyFloat_AsDouble(args[0]);
    if (delay == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return schedule_at(self, fl_loop_time() + delay, args + 1, nargs - 1,
                       context);
}

static PyObject *
loop_call_at(FlLoop *self, PyObject *const *args, Py_ssize_t nargsf,
             PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    PyObject *context;
    if (parse_context_kw(args + nargs, kwnames, "call_at", &context) < 0
            || require_callback_arg(nargs, 2, "call_at",
                                    "'when' and 'callback'") < 0) {
        return NULL;
    }
    if (args[0] == Py_None) {
        PyErr_SetString(PyExc_TypeError, "when cannot be None");
        return NULL;
    }
    double when = PyFloat_AsDouble(args[0]);
    if (when == -1.0 && PyErr_Occurred()) {
        return NULL;
    }
    return schedule_at(self, when, args + 1, nargs - 1, context);
}

static PyObject *
loop_timer_handle_cancelled(FlLoop *self, PyObject *handle)
{
    if (fl_handle_check(handle) && FL_HANDLE(handle)->is_timer) {
        fl_timer_cancelled(self, handle);
    }
    Py_RETURN_NONE;
}

/* Queues an existing Handle (signal handlers, I/O), skipping cancelled ones. */
static PyObject *
loop_add_callback(FlLoop *self, PyObject *handle)
{
    if (!fl_handle_check(handle)) {
        PyErr_SetString(PyExc_TypeError, "a fastloop Handle is required");
        return NULL;
    }
    if (!FL_HANDLE(handle)->cancelled
            && fl_ready_push(&self->ready, fl_handle_run_entry, handle) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

/* ---- futures and tasks ---- */

static PyObject *
loop_create_future(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    PyTypeObject *type = self->state->future_type;
    PyObject *fut = type->tp_alloc(type, 0);
    if (fut != NULL && fl_future_init(self->state, fut, (PyObject *)self) < 0) {
        Py_CLEAR(fut);
    }
    return fut;
}

/* The keywords Task() takes through create_task(): name and context, and
   from 3.14 on eager_start (asyncio's create_task passes every keyword). */
static int
task_keywords(PyObject *const *kwvalues, PyObject *kwnames, PyObject **name,
              PyObject **context, int *eager)
{
    for (Py_ssize_t i = 0; kwnames && i < PyTuple_GET_SIZE(kwnames); i++) {
        PyObject *key = PyTuple_GET_ITEM(kwnames, i);
        if (PyUnicode_CompareWithASCIIString(key, "name") == 0) {
            *name = kwvalues[i];
        }
        else if (PyUnicode_CompareWithASCIIString(key, "context") == 0) {
            *context = kwvalues[i];
        }
#if PY_VERSION_HEX >= 0x030E0000
        else if (PyUnicode_CompareWithASCIIString(key, "eager_start") == 0) {
            *eager = PyObject_IsTrue(kwvalues[i]);
            if (*eager < 0) {
                return -1;
            }
        }
#endif
        else {
            PyErr_Format(PyExc_TypeError,
                         PY_VERSION_HEX >= 0x030E0000
                         ? "Task.__init__() got an unexpected keyword argument '%S'"
                         : "create_task() got an unexpected keyword argument '%S'",
                         key);
            return -1;
        }
    }
    return 0;
}

/* A task factory is called as each Python version calls it (name and
   context, already read from the keywords, matter before 3.14 only). */
static PyObject *
call_task_factory(FlLoop *self, PyObject *coro, PyObject *const *kwvalues,
                  PyObject *kwnames, PyObject *name, PyObject *context)
{
#if PY_VERSION_HEX >= 0x030E0000
    /* 3.14+: factory(loop, coro, **kwargs), every keyword as given. */
    Py_ssize_t n = 2 + (kwnames ? PyTuple_GET_SIZE(kwnames) : 0);
    PyObject **stack = PyMem_Malloc(n * sizeof(PyObject *));
    if (stack == NULL) {
        return PyErr_NoMemory();
    }
    stack[0] = (PyObject *)self;
    stack[1] = coro;
    memcpy(stack + 2, kwvalues, (n - 2) * sizeof(PyObject *));
    PyObject *task = PyObject_Vectorcall(self->task_factory, stack, 2, kwnames);
    PyMem_Free(stack);
    return task;
#else
    /* factory(loop, coro[, context=]), then task.set_name(name). */
    PyObject *call_args[3] = {(PyObject *)self, coro, context};
    PyObject *task = context == Py_None
        ? PyObject_Vectorcall(self->task_factory, call_args, 2, NULL)
        : PyObject_Vectorcall(self->task_factory, call_args, 2,
                              self->state->kwnames_context);
    if (task != NULL && name != Py_None) {
        PyObject *r = PyObject_CallMethod(task, "set_name", "O", name);
        if (r == NULL) {
            Py_CLEAR(task);
        }
        Py_XDECREF(r);
    }
    return task;
#endif
}

static PyObject *
loop_create_task(FlLoop *self, PyObject *const *args, Py_ssize_t nargsf,
                 PyObject *kwnames)
{
    Py_ssize_t nargs = PyVectorcall_NARGS(nargsf);
    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "create_task() takes exactly 1 positional argument (%zd given)",
                     nargs);
        return NULL;
    }
    PyObject *name = Py_None, *context = Py_None;
    int eager = 0;
#if PY_VERSION_HEX < 0x030E0000
    /* Refused before the closed check, factory or not. */
    if (task_keywords(args + 1, kwnames, &name, &context, &eager) < 0) {
        return NULL;
    }
#endif
    if (fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->task_factory != NULL && self->task_factory != Py_None) {
        return call_task_factory(self, args[0], args + 1, kwnames, name, context);
    }
#if PY_VERSION_HEX >= 0x030E0000
    if (task_keywords(args + 1, kwnames, &name, &context, &eager) < 0) {
        return NULL;
    }
#endif
    return fl_task_new(self->state, args[0], (PyObject *)self, name, context, eager);
}

/* ---- the run loop ---- */

static void
poll_io(FlLoop *self, int may_block, double timeout)
{
    if (!may_block) {
        double now = fl_loop_time();
        unsigned long seen = self->io_events;
        if (self->poll_found_nothing && now - self->last_poll < FL_BUSY_POLL_INTERVAL) {
            return;
        }
        ev_run(self->ev, EVRUN_NOWAIT);
        self->last_poll = now;
        self->poll_found_nothing = self->io_events == seen;
        return;
    }
    self->poll_found_nothing = 0;
    if (timeout >= 0) {
        /* libev counts a relative timer from its cached clock: refresh it. */
        ev_now_update(self->ev);
        ev_timer_set(&self->poll_timeout, timeout, 0.0);
        ev_timer_start(self->ev, &self->poll_timeout);
    }
    self->poll_may_block = 1;
    ev_run(self->ev, EVRUN_ONCE);
    self->poll_may_block = 0;
    if (timeout >= 0) {
        ev_timer_stop(self->ev, &self->poll_timeout);
    }
}

/* Moves the timers that are due to the ready queue. */
static int
collect_due_timers(FlLoop *self)
{
    if (self->timers.count == 0) {
        return 0;
    }
    double end = fl_loop_time() + self->clock_resolution;
    while (self->timers.count && fl_timers_first_when(&self->timers) < end) {
        PyObject *t = fl_timers_pop(&self->timers);
        int r = FL_HANDLE(t)->cancelled ? 0 : fl_ready_push(
            &self->ready, fl_handle_run_entry, t);
        Py_DECREF(t);
        if (r < 0) {
            return -1;
        }
    }
    return 0;
}

static int
run_entry_debug(FlLoop *self, fl_ready_item *item)
{
    Py_XSETREF(self->current_handle, Py_NewRef(item->arg));
    double t0 = fl_loop_time();
    int r = item->fn(self, item);
    double dt = fl_loop_time() - t0;
    Py_CLEAR(self->current_handle);
    if (r == 0 && dt >= self->slow_callback_duration
            && self->state->helper_slow_callback != NULL) {
        PyObject *secs = PyFloat_FromDouble(dt);
        PyObject *res = secs ? PyObject_CallFunctionObjArgs(
            self->state->helper_slow_callback, item->arg, secs, NULL) : NULL;
        Py_XDECREF(secs);
        if (res == NULL) {
            return -1;
        }
        Py_DECREF(res);
    }
    return r;
}

static int
run_ready(FlLoop *self)
{
    /* Only what is ready now: callbacks scheduled by these run next time,
       after another poll. */
    size_t ntodo = self->ready.count;
    int r = 0;
    while (r == 0 && ntodo-- && self->ready.count) {
        fl_ready_item item = fl_ready_pop(&self->ready);
        if (self->entered_task != NULL && !fl_task_is_step_entry(item.fn)) {
            r = fl_task_leave_current(self);
        }
        if (r == 0) {
            r = self->debug ? run_entry_debug(self, &item)
                            : item.fn(self, &item);
        }
        fl_ready_item_release(&item);
    }
    /* Nothing runs as a task between iterations. */
    if (fl_task_leave_current(self) < 0) {
        r = -1;
    }
    return r;
}

static int
run_once(FlLoop *self)
{
    fl_timers_prune(&self->timers);

    int may_block = !(self->ready.count || self->stopping);
    double timeout = -1.0;              /* sleep until an event */
    if (may_block && self->timers.count) {
        timeout = fl_timers_first_when(&self->timers) - fl_loop_time();
        if (timeout <= 0) {
            may_block = 0;
        }
        else if (timeout > FL_MAX_POLL_TIMEOUT) {
            timeout = FL_MAX_POLL_TIMEOUT;
        }
    }
    poll_io(self, may_block, timeout);
    if (raise_pending_syserr() < 0) {
        return -1;
    }
    /* Python-level signal handlers (KeyboardInterrupt, asyncio.Runner's
       SIGINT handler) run here, promptly even after a long sleep. */
    if (PyErr_CheckSignals() < 0) {
        return -1;
    }
    if (collect_due_timers(self) < 0) {
        return -1;
    }
    return run_ready(self);
}

static PyObject *
loop_run(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    if (self->in_run) {
        PyErr_SetString(PyExc_RuntimeError, "This event loop is already running");
        return NULL;
    }
    if (self->wakeup_rfd < 0 && open_wakeup(self) < 0) {
        /* A forked child could not remake it; perhaps it can now. */
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    /* close() refuses while this runs, whatever Python code does to the
       running flag: the loop's ev stays valid for the whole run. */
    self->in_run = 1;
    int r;
    do {
        r = run_once(self);
    } while (r == 0 && !self->stopping);
    self->in_run = 0;
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
loop_stop(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    self->stopping = 1;
    Py_RETURN_NONE;
}

static PyObject *
loop_is_running(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->running);
}

static PyObject *
loop_is_closed(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->closed);
}

static PyObject *
loop_time(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyFloat_FromDouble(fl_loop_time());
}

static PyObject *
loop_get_debug(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(self->debug);
}

static PyObject *
loop_py_check_closed(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (fl_loop_check_closed(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
loop_py_check_thread(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (fl_loop_check_thread(self) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
loop_write_to_self(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->ev != NULL) {
        write_wakeup(self);
    }
    Py_RETURN_NONE;
}

/* ---- lifetime ---- */

static void
link_open(FlLoop *self)
{
    fl_state *st = self->state;
    self->prev_open = NULL;
    self->next_open = st->open_loops;
    if (st->open_loops) {
        st->open_loops->prev_open = self;
    }
    st->open_loops = self;
}

static void
unlink_open(FlLoop *self)
{
    fl_state *st = self->state;
    if (self->prev_open) {
        self->prev_open->next_open = self->next_open;
    }
    else if (st->open_loops == self) {
        st->open_loops = self->next_open;
    }
    if (self->next_open) {
        self->next_open->prev_open = self->prev_open;
    }
    self->next_open = self->prev_open = NULL;
}

static void
destroy_ev(FlLoop *self)
{
    if (self->ev == NULL) {
        return;
    }
    fl_io_clear(self);
    close_wakeup_fds(self);
    ev_timer_stop(self->ev, &self->poll_timeout);
    ev_loop_destroy(self->ev);
    self->ev = NULL;
    unlink_open(self);
}

/* In the child, right after fork(), with one thread. libev re-creates its
   epoll at the next ev_run (closing the old one first). The wakeup eventfd
   is shared with the parent: the child's must be its own, or each process
   would drain the other's wakeups. Closing the inherited one first means
   no free descriptor is needed; if making it fails all the same, the
   loop's next run tries again and raises OSError. */
void
fl_loops_after_fork(fl_state *state)
{
    for (FlLoop *l = state->open_loops; l != NULL; l = l->next_open) {
        if (l->ev != NULL) {
            ev_loop_fork(l->ev);
            close_wakeup_fds(l);
            (void)open_wakeup(l);   /* on failure, loop_run retries and raises */
        }
    }
}

static PyObject *
loop_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    FlLoop *self = (FlLoop *)type->tp_alloc(type, 0);
    if (self == NULL) {
        return NULL;
    }
    self->wakeup_rfd = self->wakeup_wfd = -1;
    self->state = fl_state_from_type(type);
    if (self->state == NULL) {
        Py_DECREF(self);
        return NULL;
    }
    /* Never the default loop: it would take over SIGCHLD. epoll alone where
       libev recommends it: without a descriptor for it, libev would fall
       back to poll() and the loop would limp on; fail here instead. */
    unsigned int flags = EVFLAG_NOENV | EVFLAG_NOSIGMASK;
    errno = 0;
    self->ev = ev_loop_new(flags | (ev_recommended_backends() & EVBACKEND_EPOLL));
    if (self->ev == NULL && errno != EMFILE && errno != ENFILE && errno != ENOMEM) {
        self->ev = ev_loop_new(flags);  /* no epoll in this kernel */
    }
    if (self->ev == NULL) {
        int err = errno ? errno : ENOMEM;
        Py_DECREF(self);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    ev_set_userdata(self->ev, self);
    ev_set_loop_release_cb(self->ev, release_gil, acquire_gil);
    ev_io_init(&self->wakeup, wakeup_cb, -1, EV_READ);
    if (open_wakeup(self) < 0) {
        int err = errno;
        Py_DECREF(self);
        errno = err;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    ev_timer_init(&self->poll_timeout, poll_timeout_cb, 0.0, 0.0);
    self->slow_callback_duration = 0.1;
    self->clock_resolution = 1e-9;
    struct timespec res;
    if (clock_getres(CLOCK_MONOTONIC, &res) == 0) {
        self->clock_resolution = (double)res.tv_sec + (double)res.tv_nsec * 1e-9;
    }
    link_open(self);
    return (PyObject *)self;
}

static PyObject *
loop_close_core(FlLoop *self, PyObject *Py_UNUSED(ignored))
{
    if (self->running || self->in_run) {
        PyErr_SetString(PyExc_RuntimeError, "Cannot close a running event loop");
        return NULL;
    }
    if (self->closed) {
        Py_RETURN_NONE;
    }
    self->closed = 1;
    fl_ready_clear(&self->ready);
    fl_timers_clear(&self->timers);
    destroy_ev(self);
    Py_RETURN_NONE;
}

static int
loop_traverse(FlLoop *self, visitproc visit, void *arg)
{
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(self->current_handle);
    Py_VISIT(self->entered_task);
    Py_VISIT(self->task_factory);
    if (fl_ready_traverse(&self->ready, visit, arg) < 0
            || fl_timers_traverse(&self->timers, visit, arg) < 0
            || fl_io_traverse(&self->fds, visit, arg) < 0) {
        return -1;
    }
    return 0;
}

static int
loop_clear(FlLoop *self)
{
    Py_CLEAR(self->current_handle);
    Py_CLEAR(self->entered_task);
    Py_CLEAR(self->task_factory);
    fl_ready_clear(&self->ready);
    fl_timers_clear(&self->timers);
    if (self->ev != NULL && !self->running && !self->in_run) {
        fl_io_clear(self);
    }
    return 0;
}

static void
loop_dealloc(FlLoop *self)
{
    PyTypeObject *tp = Py_TYPE(self);
    PyObject_GC_UnTrack(self);
    if (self->weakreflist != NULL) {
        PyObject_ClearWeakRefs((PyObject *)self);
    }
    loop_clear(self);
    destroy_ev(self);
    fl_ready_free(&self->ready);
    fl_timers_free(&self->timers);
    PyMem_Free(self->fds.by_fd);
    PyMem_Free(self->fd_guard_items);   /* transports hold the loop: none is left */
    tp->tp_free(self);
    Py_DECREF(tp);
}

/* ---- attributes ---- */

static PyObject *
loop_get_thread_id(FlLoop *self, void *closure)
{
    if (!self->running) {
        Py_RETURN_NONE;
    }
    return PyLong_FromUnsignedLong(self->thread_ident);
}

/* Set by run_forever's set-up (thread ident) and clean-up (None). */
static int
loop_set_thread_id(FlLoop *self, PyObject *value, void *closure)
{
    if (value == NULL || value == Py_None) {
        self->running = 0;
        return 0;
    }
    unsigned long ident = PyLong_AsUnsignedLong(value);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        return -1;
    }
    self->thread_ident = ident;
    self->running = 1;
    return 0;
}

static PyObject *
loop_get_ready_count(FlLoop *self, void *closure)
{
    return PyLong_FromSize_t(self->ready.count);
}

static PyObject *
loop_get_timer_count(FlLoop *self, void *closure)
{
    return PyLong_FromSsize_t(self->timers.count);
}

static PyObject *
loop_get_current_handle(FlLoop *self, void *closure)
{
    return Py_NewRef(self->current_handle ? self->current_handle : Py_None);
}

static PyObject *
io_add_reader(FlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return fl_io_add_reader(self, args, nargs, NULL);
}

static PyObject *
io_add_writer(FlLoop *self, PyObject *const *args, Py_ssize_t nargs)
{
    return fl_io_add_writer(self, args, nargs, NULL);
}

static PyMethodDef loop_methods[] = {
    {"time", (PyCFunction)loop_time, METH_NOARGS, NULL},
    {"call_soon", (PyCFunction)(void (*)(void))loop_call_soon,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_soon_threadsafe", (PyCFunction)(void (*)(void))loop_call_soon_threadsafe,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_later", (PyCFunction)(void (*)(void))loop_call_later,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"call_at", (PyCFunction)(void (*)(void))loop_call_at,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"add_reader", (PyCFunction)(void (*)(void))io_add_reader, METH_FASTCALL, NULL},
    {"add_writer", (PyCFunction)(void (*)(void))io_add_writer, METH_FASTCALL, NULL},
    {"remove_reader", (PyCFunction)fl_io_remove_reader, METH_O, NULL},
    {"remove_writer", (PyCFunction)fl_io_remove_writer, METH_O, NULL},
    {"stop", (PyCFunction)loop_stop, METH_NOARGS, NULL},
    {"is_running", (PyCFunction)loop_is_running, METH_NOARGS, NULL},
    {"is_closed", (PyCFunction)loop_is_closed, METH_NOARGS, NULL},
    {"get_debug", (PyCFunction)loop_get_debug, METH_NOARGS, NULL},
    {"_run", (PyCFunction)loop_run, METH_NOARGS,
     "Run iterations until stop(); run_forever() does the set-up around it."},
    {"_close_core", (PyCFunction)loop_close_core, METH_NOARGS, NULL},
    {"_check_closed", (PyCFunction)loop_py_check_closed, METH_NOARGS, NULL},
    {"_check_thread", (PyCFunction)loop_py_check_thread, METH_NOARGS, NULL},
    {"_timer_handle_cancelled", (PyCFunction)loop_timer_handle_cancelled, METH_O, NULL},
    {"_add_callback", (PyCFunction)loop_add_callback, METH_O, NULL},
    {"create_future", (PyCFunction)loop_create_future, METH_NOARGS, NULL},
    {"create_task", (PyCFunction)(void (*)(void))loop_create_task,
     METH_FASTCALL | METH_KEYWORDS, NULL},
    {"_write_to_self", (PyCFunction)loop_write_to_self, METH_NOARGS, NULL},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef loop_members[] = {
    {"slow_callback_duration", T_DOUBLE, offsetof(FlLoop, slow_callback_duration), 0},
    {"_clock_resolution", T_DOUBLE, offsetof(FlLoop, clock_resolution), READONLY},
    {"_stopping", T_BOOL, offsetof(FlLoop, stopping), 0},
    {"_debug", T_BOOL, offsetof(FlLoop, debug), 0},
    {"_closed", T_BOOL, offsetof(FlLoop, closed), READONLY},
    {"_task_factory", T_OBJECT, offsetof(FlLoop, task_factory), 0},
    {"__weaklistoffset__", T_PYSSIZET, offsetof(FlLoop, weakreflist), READONLY},
    {NULL},
};

static PyGetSetDef loop_getset[] = {
    {"_thread_id", (getter)loop_get_thread_id, (setter)loop_set_thread_id, NULL, NULL},
    {"_ready_count", (getter)loop_get_ready_count, NULL, NULL, NULL},
    {"_timer_count", (getter)loop_get_timer_count, NULL, NULL, NULL},
    {"_current_handle", (getter)loop_get_current_handle, NULL, NULL, NULL},
    {NULL},
};

static PyType_Slot loop_slots[] = {
    {Py_tp_new, loop_new},
    {Py_tp_dealloc, loop_dealloc},
    {Py_tp_traverse, loop_traverse},
    {Py_tp_clear, loop_clear},
    {Py_tp_methods, loop_methods},
    {Py_tp_members, loop_members},
    {Py_tp_getset, loop_getset},
    {Py_tp_doc, "The C core of fastloop.Loop: ready queue, timers, fd watchers, run loop."},
    {0, NULL},
};

PyType_Spec fl_loop_spec = {
    .name = "fastloop._core.LoopCore",
    .basicsize = sizeof(FlLoop),
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = loop_slots,
};

void
fl_loop_install_syserr_cb(void)
{
    ev_set_syserr_cb(fl_syserr_cb);
}
