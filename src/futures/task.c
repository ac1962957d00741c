#include "futures/task.h"
#include "core/loopcore.h"
#include "callbacks/handle.h"
#include "futures/introspect.h"

/* A task awaiting a fastloop future on a fastloop loop is woken by a C
   entry in the ready queue: no Handle, no bound method, no attribute lookup.
   Anything else (a foreign loop, a foreign future) goes through asyncio's
   generic protocol: loop.call_soon() and add_done_callback(). */

static fl_state *
task_state(PyObject *task)
{
    FlLoop *loop = FL_FUT(task)->fl_loop;
    return loop ? loop->state : fl_state_from_type(Py_TYPE(task));
}

static int task_step(fl_state *st, PyObject *task, PyObject *exc, FlLoop *lazy);
static int task_step_entry(FlLoop *loop, fl_ready_item *item);
static int task_wakeup_entry(FlLoop *loop, fl_ready_item *item);
static int task_cancel(fl_state *st, PyObject *task, PyObject *msg);
static int link_awaiter(fl_state *st, PyObject *fut, PyObject *task, int add);

/* A task without a loop: made with __new__ alone, cleared by the
   collector, or left so by a failed re-initialization (possibly by its own
   coroutine, in the middle of a step). */
static int
require_loop(PyObject *task)
{
    if (FL_FUT(task)->loop == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Future object is not initialized.");
        return -1;
    }
    return 0;
}

static int
require_coro(PyObject *task)
{
    if (FL_TASK(task)->coro == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "Task object is not initialized.");
        return -1;
    }
    return 0;
}

/* ---- current task bookkeeping (asyncio.current_task) ---- */

static int
call2(PyObject *fn, PyObject *a, PyObject *b)
{
    PyObject *args[2] = {a, b};
    PyObject *r = PyObject_Vectorcall(fn, args, 2, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

static int
call1(PyObject *fn, PyObject *a)
{
    PyObject *r = PyObject_CallOneArg(fn, a);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* ---- asyncio.all_tasks() registration ---- */

/* 3.14+: the task list in the base struct that all_tasks() walks (see
   introspect.h). Before 3.14, asyncio keeps tasks in a WeakSet whose
   weakrefs call back into Python when a task dies. When that WeakSet is the
   stock one, fastloop adds a plain weakref to its underlying set and takes
   it out again when the task is done (all_tasks() skips done tasks anyway):
   two set operations in C instead of two Python calls per task. */
static int
register_task(fl_state *st, PyObject *task)
{
    if (FL_BASE_ON) {
        fl_base_register_task(task);
        return 0;
    }
    if (st->task_registry == Py_None || !PySet_Check(st->task_registry)) {
        return call1(st->register_task, task);
    }
    FlTaskFields *t = FL_TASK(task);
    PyObject *ref = PyWeakref_NewRef(task, NULL);
    if (ref == NULL) {
        return -1;
    }
    if (PySet_Add(st->task_registry, ref) < 0) {
        Py_DECREF(ref);
        return -1;
    }
    Py_XSETREF(t->registry_ref, ref);
    return 0;
}

static void
unregister_task(fl_state *st, PyObject *task)
{
    fl_base_unregister_task(task);
    FlTaskFields *t = FL_TASK(task);
    PyObject *ref = t->registry_ref;
    if (ref == NULL) {
        return;
    }
    t->registry_ref = NULL;
    if (st != NULL && PySet_Check(st->task_registry)) {
        PyObject *exc = fl_err_get_raised();
        if (PySet_Discard(st->task_registry, ref) < 0) {
            PyErr_WriteUnraisable(task);
        }
        if (exc != NULL) {
            fl_err_set_raised(exc);
        }
    }
    Py_DECREF(ref);
}

/* asyncio.current_task() reads the running task from the thread state
   (3.14+) or from a dict keyed by loop (before), which _enter_task() and
   _leave_task() maintain; where fastloop can reach it, it updates it
   directly, with the same checks, and saves two calls per step. */
static int
current_task_is_direct(fl_state *st)
{
    return FL_BASE_ON || PyDict_CheckExact(st->current_tasks);
}

/* Where the current task of `loop` is kept: the thread state's slot
   (3.14+; the loop must be the running loop), else the dict's entry.
   *current is the task there (borrowed), or NULL. */
typedef struct {
    PyObject **slot;
    PyObject *current;
} current_task_ref;

static int
find_current_task(fl_state *st, PyObject *loop, current_task_ref *ref)
{
    if (FL_BASE_ON) {
        ref->slot = fl_base_running_task_slot(loop);
        if (ref->slot == NULL) {
            return -1;
        }
        ref->current = *ref->slot;
        return 0;
    }
    ref->slot = NULL;
    ref->current = PyDict_GetItemWithError(st->current_tasks, loop);
    return ref->current == NULL && PyErr_Occurred() ? -1 : 0;
}

/* Makes `task` (or nobody, for NULL) the current task found in `ref`. */
static int
set_current_task(fl_state *st, PyObject *loop, current_task_ref *ref,
                 PyObject *task)
{
    if (ref->slot != NULL) {
        Py_XSETREF(*ref->slot, Py_XNewRef(task));
        return 0;
    }
    if (task == NULL) {
        return PyDict_DelItem(st->current_tasks, loop);
    }
    return PyDict_SetItem(st->current_tasks, loop, task);
}

static int
err_leave_task(PyObject *task, PyObject *current)
{
    PyErr_Format(PyExc_RuntimeError,
                 "Leaving task %R does not match the current task %R.",
                 task, current ? current : Py_None);
    return -1;
}

static int
enter_task(fl_state *st, PyObject *loop, PyObject *task)
{
    if (!current_task_is_direct(st)) {
        return call2(st->enter_task, loop, task);
    }
    current_task_ref ref;
    if (find_current_task(st, loop, &ref) < 0) {
        return -1;
    }
    if (ref.current != NULL) {
        PyErr_Format(PyExc_RuntimeError,
                     "Cannot enter into task %R while another task %R is "
                     "being executed.", task, ref.current);
        return -1;
    }
    return set_current_task(st, loop, &ref, task);
}

static int
leave_task(fl_state *st, PyObject *loop, PyObject *task)
{
    if (!current_task_is_direct(st)) {
        return call2(st->leave_task, loop, task);
    }
    current_task_ref ref;
    if (find_current_task(st, loop, &ref) < 0) {
        return -1;
    }
    if (ref.current != task) {
        return err_leave_task(task, ref.current);
    }
    return set_current_task(st, loop, &ref, NULL);
}

/* Task steps run back to back from a fastloop ready queue hand the current
   task over by overwriting it, instead of leaving and entering again for
   every step (which, with the dict, churns it into a resize every few
   steps): nothing else runs between them. The loop leaves for good, with
   fl_task_leave_current(), before it runs anything else. */
static int
enter_task_lazily(fl_state *st, FlLoop *loop, PyObject *task)
{
    PyObject *prev = loop->entered_task;
    if (prev == task) {
        return 0;
    }
    if (prev == NULL) {
        if (enter_task(st, (PyObject *)loop, task) < 0) {
            return -1;
        }
    }
    else {
        current_task_ref ref;
        if (find_current_task(st, (PyObject *)loop, &ref) < 0) {
            return -1;
        }
        if (ref.current != prev) {
            return err_leave_task(prev, ref.current);
        }
        if (set_current_task(st, (PyObject *)loop, &ref, task) < 0) {
            return -1;
        }
    }
    Py_XSETREF(loop->entered_task, Py_NewRef(task));
    return 0;
}

int
fl_task_leave_current(FlLoop *loop)
{
    PyObject *task = loop->entered_task;
    if (task == NULL) {
        return 0;
    }
    loop->entered_task = NULL;
    PyObject *err = fl_err_get_raised();
    int r = leave_task(loop->state, (PyObject *)loop, task);
    Py_DECREF(task);
    if (err != NULL) {
        if (r < 0) {
            PyErr_WriteUnraisable((PyObject *)loop);
        }
        fl_err_set_raised(err);
    }
    return r;
}

int
fl_task_is_step_entry(fl_ready_fn fn)
{
    return fn == task_step_entry || fn == task_wakeup_entry;
}

/* ---- reporting errors of steps run from the ready queue ---- */

/* A step that the task's own loop cannot report: the task has no loop
   (its re-initialization failed while a step was queued) or another one
   (it was re-initialized on another loop). asyncio reports a failing step
   through the Handle that ran it, so on the loop that ran it: so does this. */
static int
report_step_error_to(FlLoop *loop, PyObject *task, PyObject *exc)
{
    PyObject *ctx = NULL, *r = NULL;
    PyObject *msg = PyUnicode_FromFormat(
        "Exception in callback <%s object at %p>.__step()",
        Py_TYPE(task)->tp_name, (void *)task);
    if (msg != NULL) {
        ctx = Py_BuildValue("{sOsOsO}", "message", msg, "exception", exc,
                            "task", task);
    }
    if (ctx != NULL) {
        r = PyObject_CallMethod((PyObject *)loop, "call_exception_handler",
                                "O", ctx);
    }
    Py_XDECREF(msg);
    Py_XDECREF(ctx);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Like a failing Handle: SystemExit and KeyboardInterrupt stop the loop,
   anything else goes to the exception handler of `loop`, the loop that
   ran the step (NULL: the task's own). */
static int
report_step_error(fl_state *st, PyObject *task, FlLoop *loop)
{
    if (PyErr_ExceptionMatches(PyExc_SystemExit)
            || PyErr_ExceptionMatches(PyExc_KeyboardInterrupt)) {
        return -1;
    }
    PyObject *exc = fl_err_get_raised();
    int r;
    if (loop != NULL && (PyObject *)loop != FL_FUT(task)->loop) {
        r = report_step_error_to(loop, task, exc);
    }
    else {
        PyObject *res = PyObject_CallFunctionObjArgs(st->helper_task_step_error,
                                                     task, exc, NULL);
        r = res == NULL ? -1 : 0;
        Py_XDECREF(res);
    }
    Py_DECREF(exc);
    return r;
}

/* ---- ready-queue entries ---- */

static int
run_in_context(fl_state *st, PyObject *task, PyObject *exc, FlLoop *loop)
{
    FlTaskFields *t = FL_TASK(task);
    if (t->context == NULL) {
        /* Never initialized, or cleared by the collector. */
        PyErr_SetString(PyExc_RuntimeError, "Task object is not initialized.");
        return report_step_error(st, task, loop);
    }
    /* Our own reference: the step may re-initialize the task, which
       replaces its context while it is entered. */
    PyObject *ctx = Py_NewRef(t->context);
    if (PyContext_Enter(ctx) < 0) {
        Py_DECREF(ctx);
        return report_step_error(st, task, loop);
    }
    /* Hand-over of the current task only where asyncio's dict is ours to
       update directly (see enter_task_lazily), and for a task of the loop
       running the step (a re-initialized one may belong to another: it is
       entered on its own loop, as asyncio does). */
    FlLoop *lazy = current_task_is_direct(st) && t->fut.loop == (PyObject *)loop
                   ? loop : NULL;
    int r = task_step(st, task, exc, lazy);
    if (r < 0) {
        PyObject *err = fl_err_get_raised();
        PyContext_Exit(ctx);
        fl_err_set_raised(err);
    }
    else if (PyContext_Exit(ctx) < 0) {
        r = -1;
    }
    Py_DECREF(ctx);
    return r < 0 ? report_step_error(st, task, loop) : 0;
}

/* A scheduled step (the first, after a bare yield, or with an error). */
static int
task_step_entry(FlLoop *loop, fl_ready_item *item)
{
    PyObject *task = item->arg;
    FlTaskFields *t = FL_TASK(task);
    PyObject *exc = t->step_exc;
    t->step_exc = NULL;
    int r = run_in_context(loop->state, task, exc, loop);
    Py_XDECREF(exc);
    return r;
}

/* The future the task waited on is done: what future.result() would raise
   goes into the coroutine, as asyncio's Task.__wakeup(future) does. The
   entry carries that future (item->callback), which need not be the one
   the task waits on by now (it may have been re-initialized since). */
static int
task_wakeup_entry(FlLoop *loop, fl_ready_item *item)
{
    PyObject *task = item->arg;
    fl_state *st = loop->state;
    PyObject *fut = item->callback;
    PyObject *exc = NULL;
    assert(fut != NULL && fl_future_is_ours(fut));
    FlFutureFields *f = FL_FUT(fut);
    if (fl_base_awaited_by_discard(fut, task) < 0) {
        return report_step_error(st, task, loop);
    }
    if (f->state == FL_CANCELLED) {
        exc = fl_future_make_cancelled_error(st, fut);
        if (exc == NULL) {
            return report_step_error(st, task, loop);
        }
    }
    else if (f->state == FL_PENDING) {
        /* Re-initialized after it woke us: what result() would raise. */
        exc = PyObject_CallFunction(st->invalid_state_error, "s",
                                    f->loop ? "Result is not set."
                                            : "Future object is not initialized.");
        if (exc == NULL) {
            return report_step_error(st, task, loop);
        }
    }
    else {
        f->log_tb = 0;
        if (f->exception != NULL) {
            exc = Py_NewRef(f->exception);
            if (f->exception_tb != NULL) {
                PyException_SetTraceback(exc, f->exception_tb);
            }
        }
    }
    int r = run_in_context(st, task, exc, loop);
    Py_XDECREF(exc);
    return r;
}

/* ---- the generic protocol (foreign loops and futures) ---- */

static PyObject *
py_step(PyObject *task, PyObject *const *args, Py_ssize_t nargs)
{
    fl_state *st = task_state(task);
    PyObject *exc = nargs > 0 && args[0] != Py_None ? args[0] : NULL;
    if (task_step(st, task, exc, NULL) < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyObject *
py_wakeup(PyObject *task, PyObject *future)
{
    fl_state *st = task_state(task);
    PyObject *exc = NULL;
    if (link_awaiter(st, future, task, 0) < 0) {
        return NULL;
    }
    if (fl_future_is_exact(future)) {
        PyObject *res = fl_future_result(st, future);
        if (res == NULL) {
            exc = fl_err_get_raised();
        }
        Py_XDECREF(res);
    }
    else {
        PyObject *res = PyObject_CallMethod(future, "result", NULL);
        if (res == NULL) {
            exc = fl_err_get_raised();
        }
        Py_XDECREF(res);
    }
    int r = task_step(st, task, exc, NULL);
    Py_XDECREF(exc);
    if (r < 0) {
        return NULL;
    }
    Py_RETURN_NONE;
}

static PyMethodDef step_def = {
    "task_step", (PyCFunction)(void (*)(void))py_step, METH_FASTCALL, NULL};
static PyMethodDef wakeup_def = {
    "task_wakeup", (PyCFunction)py_wakeup, METH_O, NULL};

PyObject *
fl_task_wakeup_callable(fl_state *st, PyObject *task)
{
    return PyCFunction_New(&wakeup_def, task);
}

/* Schedules a step, with `exc` thrown in (may be NULL). */
static int
schedule_step(fl_state *st, PyObject *task, PyObject *exc)
{
    FlTaskFields *t = FL_TASK(task);
    if (require_loop(task) < 0) {
        return -1;
    }
    FlLoop *loop = t->fut.fl_loop;
    if (loop != NULL) {
        if (fl_loop_check_closed(loop) < 0) {
            return -1;
        }
        /* The entry first: releasing an old exception may run any code. */
        PyObject *old_exc = t->step_exc;
        t->step_exc = Py_XNewRef(exc);
        int r = fl_ready_push(&loop->ready, task_step_entry, task);
        Py_XDECREF(old_exc);
        return r;
    }
    PyObject *step = PyCFunction_New(&step_def, task);
    if (step == NULL) {
        return -1;
    }
    /* Read after the allocation, and held across the call: the loop's
       call_soon() may re-initialize the task. */
    if (require_loop(task) < 0) {
        Py_DECREF(step);
        return -1;
    }
    PyObject *tloop = Py_NewRef(t->fut.loop);
    PyObject *ctx = Py_XNewRef(t->context);
    PyObject *args[2] = {step, exc};
    int r = fl_call_with_context(st, tloop, "call_soon", args, exc ? 2 : 1, ctx);
    Py_XDECREF(ctx);
    Py_DECREF(tloop);
    Py_DECREF(step);
    return r;
}

static int
schedule_step_error(fl_state *st, PyObject *task, PyObject *message)
{
    if (message == NULL) {
        return -1;
    }
    PyObject *exc = PyObject_CallOneArg(PyExc_RuntimeError, message);
    Py_DECREF(message);
    if (exc == NULL) {
        return -1;
    }
    int r = schedule_step(st, task, exc);
    Py_DECREF(exc);
    return r;
}

/* ---- what the coroutine yielded ---- */

/* Calls waiter.cancel(msg): a Task's own cancel() when it is a Task. */
static int
cancel_waiter(fl_state *st, PyObject *waiter, PyObject *msg)
{
    if (Py_IS_TYPE(waiter, st->task_type)) {
        return task_cancel(st, waiter, msg);
    }
    if (Py_IS_TYPE(waiter, st->future_type)) {
        return fl_future_cancel(st, waiter, msg);
    }
    PyObject *cancel = PyObject_GetAttrString(waiter, "cancel");
    if (cancel == NULL) {
        return -1;
    }
    PyObject *kw = Py_BuildValue("{sO}", "msg", msg ? msg : Py_None);
    PyObject *empty = PyTuple_New(0);
    PyObject *r = (kw && empty) ? PyObject_Call(cancel, empty, kw) : NULL;
    Py_XDECREF(kw);
    Py_XDECREF(empty);
    Py_DECREF(cancel);
    if (r == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

/* 3.14+: the call graph's link from a future to the task awaiting it,
   added when the task starts waiting and discarded when it wakes. Foreign
   futures go through asyncio's own functions, which skip what is not an
   asyncio Future. */
static int
link_awaiter(fl_state *st, PyObject *fut, PyObject *task, int add)
{
    if (!FL_BASE_ON) {
        return 0;
    }
    if (fl_future_is_ours(fut)) {
        return add ? fl_base_awaited_by_add(fut, task)
                   : fl_base_awaited_by_discard(fut, task);
    }
    return call2(add ? st->awaited_by_add : st->awaited_by_discard, fut, task);
}

static PyObject *
loop_of_future(PyObject *fut)
{
    PyObject *loop = PyObject_CallMethod(fut, "get_loop", NULL);
    if (loop == NULL && PyErr_ExceptionMatches(PyExc_AttributeError)) {
        PyErr_Clear();
        loop = PyObject_GetAttrString(fut, "_loop");
    }
    return loop;
}

/* The task now waits for `fut`, which it owns a reference to. */
static int
wait_for(fl_state *st, PyObject *task, PyObject *fut, int ours)
{
    FlTaskFields *t = FL_TASK(task);
    int r;
    if (link_awaiter(st, fut, task, 1) < 0) {
        Py_DECREF(fut);
        return -1;
    }
    if (ours && t->fut.fl_loop != NULL) {
        FL_FUT(fut)->blocking = 0;
        r = fl_future_add_callback(st, fut, task, NULL, task_wakeup_entry);
    }
    else {
        if (ours) {
            FL_FUT(fut)->blocking = 0;
        }
        else if (PyObject_SetAttrString(fut, "_asyncio_future_blocking", Py_False) < 0) {
            Py_DECREF(fut);
            return -1;
        }
        PyObject *wakeup = fl_task_wakeup_callable(st, task);
        if (wakeup == NULL) {
            Py_DECREF(fut);
            return -1;
        }
        /* Held across the call: foreign code may re-initialize the task. */
        PyObject *ctx = Py_XNewRef(t->context);
        if (ours) {
            r = fl_future_add_callback(st, fut, wakeup, ctx, NULL);
        }
        else {
            r = fl_call_with_context(st, fut, "add_done_callback", &wakeup, 1,
                                     ctx);
        }
        Py_XDECREF(ctx);
        Py_DECREF(wakeup);
    }
    if (r < 0) {
        Py_DECREF(fut);
        return -1;
    }
    Py_XSETREF(t->fut_waiter, fut);
    if (t->must_cancel) {
        PyObject *waiter = Py_NewRef(fut);
        PyObject *msg = Py_XNewRef(t->fut.cancel_msg);
        int c = cancel_waiter(st, waiter, msg);
        Py_XDECREF(msg);
        Py_DECREF(waiter);
        if (c < 0) {
            return -1;
        }
        if (c) {
            t->must_cancel = 0;
        }
    }
    return 0;
}

/* Acts on a value the coroutine yielded (a new reference, consumed). */
static int
handle_yield(fl_state *st, PyObject *task, PyObject *result)
{
    FlTaskFields *t = FL_TASK(task);
    if (result == Py_None) {
        /* A bare yield (asyncio.sleep(0)): step again soon. */
        Py_DECREF(result);
        return schedule_step(st, task, NULL);
    }
    int ours = fl_future_is_exact(result);
    PyObject *blocking;
    if (ours) {
        blocking = Py_NewRef(FL_FUT(result)->blocking ? Py_True : Py_False);
    }
    else {
        blocking = PyObject_GetAttrString(result, "_asyncio_future_blocking");
        if (blocking == NULL) {
            if (!PyErr_ExceptionMatches(PyExc_AttributeError)) {
                Py_DECREF(result);
                return -1;
            }
            PyErr_Clear();
        }
    }

    if (blocking != NULL && blocking != Py_None) {
        PyObject *loop = !ours ? loop_of_future(result)
                         : require_loop(result) < 0 ? NULL
                         : Py_NewRef(FL_FUT(result)->loop);
        if (loop == NULL) {
            Py_DECREF(blocking);
            Py_DECREF(result);
            return -1;
        }
        int same_loop = loop == t->fut.loop;
        Py_DECREF(loop);
        int truth = PyObject_IsTrue(blocking);
        Py_DECREF(blocking);
        int r;
        if (!same_loop) {
            r = schedule_step_error(st, task, PyUnicode_FromFormat(
                "Task %R got Future %R attached to a different loop", task, result));
        }
        else if (truth < 0) {
            r = -1;
        }
        else if (truth && result == task) {
            r = schedule_step_error(st, task, PyUnicode_FromFormat(
                "Task cannot await on itself: %R", task));
        }
        else if (truth) {
            return wait_for(st, task, result, ours);
        }
        else {
            r = schedule_step_error(st, task, PyUnicode_FromFormat(
                "yield was used instead of yield from in task %R with %R",
                task, result));
        }
        Py_DECREF(result);
        return r;
    }
    Py_XDECREF(blocking);

    int r;
    if (PyGen_CheckExact(result)) {
        r = schedule_step_error(st, task, PyUnicode_FromFormat(
            "yield was used instead of yield from for generator in task %R with %R",
            task, result));
    }
    else {
        r = schedule_step_error(st, task, PyUnicode_FromFormat(
            "Task got bad yield: %R", result));
    }
    Py_DECREF(result);
    return r;
}

/* ---- the step ---- */

/* Sends into (or throws `exc`, consumed, into) the coroutine and settles
   the task from what comes back. */
static int
step_run_and_handle_result(fl_state *st, PyObject *task, PyObject *exc)
{
    FlTaskFields *t = FL_TASK(task);
    PyObject *result = NULL;
    PySendResult status;
    /* Our own reference: the coroutine may re-initialize its task, which
       drops the task's reference to it while it runs. */
    if (require_coro(task) < 0) {
        Py_XDECREF(exc);
        return -1;
    }
    PyObject *coro = Py_NewRef(t->coro);
    if (exc == NULL) {
        status = PyIter_Send(coro, Py_None, &result);
        Py_DECREF(coro);
    }
    else {
        result = PyObject_CallMethod(coro, "throw", "O", exc);
        Py_DECREF(coro);
        Py_DECREF(exc);
        if (result != NULL) {
            status = PYGEN_NEXT;
        }
        else if (PyErr_ExceptionMatches(PyExc_StopIteration)) {
            PyObject *stop = fl_err_get_raised();
            result = PyObject_GetAttrString(stop, "value");
            Py_DECREF(stop);
            if (result == NULL) {
                return -1;
            }
            status = PYGEN_RETURN;
        }
        else {
            status = PYGEN_ERROR;
        }
    }

    if (status != PYGEN_NEXT) {
        unregister_task(st, task);      /* the coroutine is finished */
    }
    if (status == PYGEN_RETURN) {
        int r;
        if (t->must_cancel) {
            t->must_cancel = 0;
            PyObject *msg = Py_XNewRef(t->fut.cancel_msg);
            r = fl_future_cancel(st, task, msg);
            Py_XDECREF(msg);
        }
        else {
            r = fl_future_set_result(st, task, result);
        }
        Py_DECREF(result);
        return r < 0 ? -1 : 0;
    }
    if (status == PYGEN_ERROR) {
        PyObject *err = fl_err_get_raised();
        if (PyErr_GivenExceptionMatches(err, st->cancelled_error)) {
            Py_XSETREF(t->fut.cancelled_exc, err);
            return fl_future_cancel(st, task, NULL) < 0 ? -1 : 0;
        }
        int fatal = PyErr_GivenExceptionMatches(err, PyExc_KeyboardInterrupt)
                    || PyErr_GivenExceptionMatches(err, PyExc_SystemExit);
        int r = fl_future_set_exception(st, task, err);
        if (r == 0 && fatal) {
            fl_err_set_raised(err);     /* set, and raised again */
            return -1;
        }
        Py_DECREF(err);
        return r;
    }
    return handle_yield(st, task, result);
}

static int
/* One step of the task. `lazy` is the fastloop loop running it from its
   ready queue, which then leaves the task current after the step (see
   enter_task_lazily); NULL enters and leaves around the step. */
task_step(fl_state *st, PyObject *task, PyObject *exc, FlLoop *lazy)
{
    FlTaskFields *t = FL_TASK(task);
    if (t->fut.state != FL_PENDING) {
        PyErr_Format(st->invalid_state_error, "_step(): already done: %R, %R",
                     task, exc ? exc : Py_None);
        return -1;
    }
    Py_XINCREF(exc);
    if (t->must_cancel) {
        if (exc == NULL || !PyErr_GivenExceptionMatches(exc, st->cancelled_error)) {
            Py_XSETREF(exc, fl_future_make_cancelled_error(st, task));
            if (exc == NULL) {
                return -1;
            }
        }
        t->must_cancel = 0;
    }
    Py_CLEAR(t->fut_waiter);
    /* Checked last: what ran above (a finalizer, the collector) may have
       re-initialized the task. */
    if (require_loop(task) < 0 || require_coro(task) < 0) {
        Py_XDECREF(exc);
        return -1;
    }
    PyObject *loop = t->fut.loop;
    Py_INCREF(loop);
    Py_INCREF(task);
    int r = lazy ? enter_task_lazily(st, lazy, task) : enter_task(st, loop, task);
    if (r < 0) {
        Py_XDECREF(exc);
    }
    else if (lazy) {
        r = step_run_and_handle_result(st, task, exc);
    }
    else {
        r = step_run_and_handle_result(st, task, exc);
        PyObject *err = r < 0 ? fl_err_get_raised() : NULL;
        if (leave_task(st, loop, task) < 0) {
            if (err != NULL) {
                PyObject *leave_err = fl_err_get_raised();
                PyException_SetContext(leave_err, err);
                err = leave_err;
            }
            else {
                err = fl_err_get_raised();
            }
            r = -1;
        }
        if (err != NULL) {
            fl_err_set_raised(err);
        }
    }
    Py_DECREF(task);
    Py_DECREF(loop);
    return r;
}

/* ---- eager start (3.12+) ---- */

static int
loop_is_running(PyObject *loop, FlLoop *fl_loop)
{
    if (fl_loop != NULL) {
        return fl_loop->running;
    }
    PyObject *r = PyObject_CallMethod(loop, "is_running", NULL);
    if (r == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

static PyObject *
swap_current(fl_state *st, PyObject *loop, PyObject *task)
{
    PyObject *args[2] = {loop, task};
    return PyObject_Vectorcall(st->swap_current_task, args, 2, NULL);
}

static int
eager_start(fl_state *st, PyObject *task)
{
    FlTaskFields *t = FL_TASK(task);
    if (require_loop(task) < 0) {
        return -1;
    }
    PyObject *loop = Py_NewRef(t->fut.loop);
    PyObject *prev = swap_current(st, loop, task);
    if (prev == NULL) {
        Py_DECREF(loop);
        return -1;
    }
    /* On 3.14+ the task joins the task list for its eager step and leaves
       it by itself when it finishes there, as asyncio's does. */
    int r = 0;
    if (FL_BASE_ON) {
        fl_base_register_task(task);
    }
    else {
        r = call1(st->register_eager_task, task);
    }
    if (r == 0) {
        /* Our own reference, as in run_in_context(). */
        PyObject *ctx = Py_NewRef(t->context);
        if (PyContext_Enter(ctx) < 0) {
            r = -1;
        }
        else {
            r = step_run_and_handle_result(st, task, NULL);
            PyObject *err = r < 0 ? fl_err_get_raised() : NULL;
            if (PyContext_Exit(ctx) < 0) {
                r = -1;
                Py_XDECREF(err);
                err = NULL;
            }
            if (err != NULL) {
                fl_err_set_raised(err);
            }
        }
        Py_DECREF(ctx);
        PyObject *err = r < 0 ? fl_err_get_raised() : NULL;
        if (!FL_BASE_ON && call1(st->unregister_eager_task, task) < 0
                && err == NULL) {
            err = fl_err_get_raised();
            r = -1;
        }
        if (err != NULL) {
            fl_err_set_raised(err);
        }
    }
    PyObject *err = r < 0 ? fl_err_get_raised() : NULL;
    PyObject *cur = swap_current(st, loop, prev);
    Py_DECREF(prev);
    Py_DECREF(loop);
    if (cur == NULL) {
        Py_XDECREF(err);
        return -1;
    }
    Py_DECREF(cur);
    if (t->fut.state != FL_PENDING) {
        Py_CLEAR(t->coro);
        fl_base_set(task, fl_base.coro, NULL);
    }
    else if (register_task(st, task) < 0) {
        Py_XDECREF(err);
        return -1;
    }
    if (err != NULL) {
        fl_err_set_raised(err);
        return -1;
    }
    return r;
}

/* ---- construction ---- */

static int
is_coroutine(fl_state *st, PyObject *coro)
{
    if (PyCoro_CheckExact(coro)) {
        return 1;
    }
    PyObject *r = PyObject_CallOneArg(st->iscoroutine, coro);
    if (r == NULL) {
        return -1;
    }
    int truth = PyObject_IsTrue(r);
    Py_DECREF(r);
    return truth;
}

static void
task_clear_fields(PyObject *task)
{
    FlTaskFields *t = FL_TASK(task);
    if (t->registry_ref != NULL) {
        unregister_task(fl_state_from_type(Py_TYPE(task)), task);
    }
    fl_base_clear_task(task);
    Py_CLEAR(t->coro);
    Py_CLEAR(t->context);
    Py_CLEAR(t->name);
    Py_CLEAR(t->fut_waiter);
    Py_CLEAR(t->step_exc);
}

/* 3.14+: what `python -m asyncio ps` reads of a task. An unnamed task is
   published by number, as asyncio's own are; the tool prints "Task-<n>". */
static int
publish_name_and_coro(PyObject *task)
{
    if (!FL_BASE_ON) {
        return 0;
    }
    FlTaskFields *t = FL_TASK(task);
    fl_base_init_task(task);
    fl_base_set(task, fl_base.coro, t->coro);
    if (t->name != NULL) {
        fl_base_set(task, fl_base.name, t->name);
        return 0;
    }
    PyObject *number = PyLong_FromUnsignedLongLong(t->name_id);
    if (number == NULL) {
        return -1;
    }
    fl_base_set(task, fl_base.name, number);
    Py_DECREF(number);
    return 0;
}

/* 3.15+: asyncio's Task refuses a context that is not a Context (gh-157301);
   before, a step fails on it when it runs. */
static int
refuses_context(PyObject *context)
{
#if PY_VERSION_HEX >= 0x030F0000
    if (context != NULL && context != Py_None && !PyContext_CheckExact(context)) {
        PyErr_Format(PyExc_TypeError,
                     "a contextvars.Context was expected, got %s",
                     Py_TYPE(context)->tp_name);
        return 1;
    }
#endif
    return 0;
}

/* __init__: everything that can fail is checked before anything of the
   task is replaced, so that a failed re-initialization of a task that is
   already running leaves it running its own coroutine in its own context,
   as asyncio's does (3.10-3.14; 3.15 refuses any second __init__). Like
   asyncio's, a failure in the future half (no event loop, a loop whose
   get_debug() fails) leaves that half reset: a step already queued then
   finds no loop, and reports it instead of running. */
static int
task_init(fl_state *st, PyObject *self, PyObject *coro, PyObject *loop,
          PyObject *name, PyObject *context, int eager)
{
    FlTaskFields *t = FL_TASK(self);
    if (fl_future_refuses_reinit(self)) {
        return -1;
    }
    int coro_ok = is_coroutine(st, coro);
    if (coro_ok <= 0) {
        if (coro_ok == 0) {
            PyErr_Format(PyExc_TypeError, "a coroutine was expected, got %R", coro);
        }
        return -1;
    }
    if (refuses_context(context)) {
        return -1;
    }
    PyObject *new_name = NULL, *new_context;
    if (name != NULL && name != Py_None) {
        new_name = PyUnicode_CheckExact(name) ? Py_NewRef(name) : PyObject_Str(name);
        if (new_name == NULL) {
            return -1;
        }
    }
    new_context = context == NULL || context == Py_None
                  ? PyContext_CopyCurrent() : Py_NewRef(context);
    if (new_context == NULL) {
        Py_XDECREF(new_name);
        return -1;
    }
    if (fl_future_init(st, self, loop) < 0) {
        Py_XDECREF(new_name);
        Py_DECREF(new_context);
        return -1;
    }
    /* Replace the task half. What it held is released last, once the task
       is consistent: releasing a coroutine may run any code. */
    if (t->registry_ref != NULL) {
        unregister_task(st, self);
    }
    fl_base_clear_task(self);
    PyObject *old_coro = t->coro, *old_context = t->context;
    PyObject *old_name = t->name, *old_waiter = t->fut_waiter;
    PyObject *old_exc = t->step_exc;
    t->coro = Py_NewRef(coro);
    t->context = new_context;
    t->name = new_name;
    t->fut_waiter = NULL;
    t->step_exc = NULL;
    if (new_name == NULL) {
        t->name_id = ++st->task_name_counter;
    }
    t->must_cancel = 0;
    t->num_cancels_requested = 0;
    t->log_destroy_pending = 1;
    int r = publish_name_and_coro(self);
    Py_XDECREF(old_coro);
    Py_XDECREF(old_context);
    Py_XDECREF(old_name);
    Py_XDECREF(old_waiter);
    Py_XDECREF(old_exc);
    if (r < 0) {
        return -1;
    }
    if (eager) {
        /* What ran above may have left the task without a loop. */
        if (require_loop(self) < 0) {
            return -1;
        }
        int running = loop_is_running(t->fut.loop, t->fut.fl_loop);
        if (running < 0) {
            return -1;
        }
        if (running) {
            return eager_start(st, self);
        }
    }
    /* Registered only once the first step is scheduled, as asyncio does. */
    if (schedule_step(st, self, NULL) < 0) {
        return -1;
    }
    return register_task(st, self);
}

static int
task_tp_init(PyObject *self, PyObject *args, PyObject *kwds)
{
#if PY_VERSION_HEX >= 0x030C0000
    static char *kwlist[] = {"coro", "loop", "name", "context", "eager_start", NULL};
    const char *format = "O|$OOOp:Task";
#else
    static char *kwlist[] = {"coro", "loop", "name", "context", NULL};
    const char *format = "O|$OOO:Task";
#endif
    PyObject *coro, *loop = Py_None, *name = Py_None, *context = Py_None;
    int eager = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, format, kwlist, &coro, &loop,
                                     &name, &context, &eager)) {
        return -1;
    }
    fl_state *st = fl_state_from_type(Py_TYPE(self));
    if (st == NULL) {
        return -1;
    }
    return task_init(st, self, coro, loop, name, context, eager);
}

PyObject *
fl_task_new(fl_state *st, PyObject *coro, PyObject *loop, PyObject *name,
            PyObject *context, int eager)
{
    PyTypeObject *type = st->task_type;
    PyObject *task = type->tp_alloc(type, 0);
    if (task == NULL) {
        return NULL;
    }
    if (task_init(st, task, coro, loop, name, context, eager) < 0) {
        Py_DECREF(task);
        return NULL;
    }
    return task;
}

static PyObject *
task_tp_new(PyTypeObject *type, PyObject *args, PyObject *kwds)
{
    return type->tp_alloc(type, 0);
}

/* ---- cancellation ---- */

static int
task_cancel(fl_state *st, PyObject *task, PyObject *msg)
{
    FlTaskFields *t = FL_TASK(task);
    t->fut.log_tb = 0;
    if (t->fut.state != FL_PENDING) {
        return 0;
    }
    t->num_cancels_requested++;
    if (t->fut_waiter != NULL) {
        PyObject *waiter = Py_NewRef(t->fut_waiter);
        int r = cancel_waiter(st, waiter, msg);
        Py_DECREF(waiter);
        if (r != 0) {
            return r;   /* cancelled it (1), or failed (-1) */
        }
    }
    t->must_cancel = 1;
    Py_XSETREF(t->fut.cancel_msg, msg == NULL || msg == Py_None ? NULL : Py_NewRef(msg));
    return 1;
}

static PyObject *
task_py_cancel(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"msg", NULL};
    PyObject *msg = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|O:cancel", kwlist, &msg)) {
        return NULL;
    }
    /* No loop needed, and asyncio's cancels a task made with __new__ too. */
    int r = task_cancel(task_state(self), self, msg);
    if (r < 0) {
        return NULL;
    }
    return PyBool_FromLong(r);
}

static PyObject *
task_cancelling(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromLong(FL_TASK(self)->num_cancels_requested);
}

static PyObject *
task_uncancel(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlTaskFields *t = FL_TASK(self);
    if (t->num_cancels_requested > 0) {
        t->num_cancels_requested--;
#if PY_VERSION_HEX >= 0x030D0000
        if (t->num_cancels_requested == 0) {
            t->must_cancel = 0;
        }
#endif
    }
    return PyLong_FromLong(t->num_cancels_requested);
}

/* ---- other methods ---- */

static PyObject *
task_get_coro(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *coro = FL_TASK(self)->coro;
    return Py_NewRef(coro ? coro : Py_None);
}

#if PY_VERSION_HEX >= 0x030C0000
static PyObject *
task_get_context(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    PyObject *ctx = FL_TASK(self)->context;
    return Py_NewRef(ctx ? ctx : Py_None);
}
#endif

static PyObject *
task_get_name(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    FlTaskFields *t = FL_TASK(self);
    if (t->name == NULL) {
        if (t->name_id == 0) {
            Py_RETURN_NONE;     /* never initialized */
        }
        PyObject *name = PyUnicode_FromFormat("Task-%llu", t->name_id);
        if (name == NULL) {
            return NULL;
        }
        if (t->name != NULL) {
            /* set meanwhile, by code the allocation ran: that one wins */
            Py_DECREF(name);
        }
        else {
            t->name = name;
        }
    }
    return Py_NewRef(t->name);
}

static PyObject *
task_set_name(PyObject *self, PyObject *value)
{
    PyObject *name = PyUnicode_CheckExact(value) ? Py_NewRef(value) : PyObject_Str(value);
    if (name == NULL) {
        return NULL;
    }
    Py_XSETREF(FL_TASK(self)->name, name);
    fl_base_set(self, fl_base.name, name);
    Py_RETURN_NONE;
}

static PyObject *
task_set_result(PyObject *self, PyObject *arg)
{
    PyErr_SetString(PyExc_RuntimeError, "Task does not support set_result operation");
    return NULL;
}

static PyObject *
task_set_exception(PyObject *self, PyObject *arg)
{
    PyErr_SetString(PyExc_RuntimeError,
                    "Task does not support set_exception operation");
    return NULL;
}

static PyObject *
task_get_stack(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", NULL};
    PyObject *limit = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$O:get_stack", kwlist, &limit)) {
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(task_state(self)->helper_task_get_stack,
                                        self, limit, NULL);
}

static PyObject *
task_print_stack(PyObject *self, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"limit", "file", NULL};
    PyObject *limit = Py_None, *file = Py_None;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "|$OO:print_stack", kwlist,
                                     &limit, &file)) {
        return NULL;
    }
    return PyObject_CallFunctionObjArgs(task_state(self)->helper_task_print_stack,
                                        self, limit, file, NULL);
}

static PyObject *
task_tp_repr(PyObject *self)
{
    fl_state *st = fl_state_from_type(Py_TYPE(self));
    if (require_loop(self) < 0) {
        return NULL;    /* as asyncio's: its repr reads the loop */
    }
    if (st == NULL || st->helper_task_repr == NULL) {
        return PyUnicode_FromFormat("<%s>", _PyType_Name(Py_TYPE(self)));
    }
    return PyObject_CallOneArg(st->helper_task_repr, self);
}

/* ---- attributes ---- */

static PyObject *
get_log_destroy_pending(PyObject *self, void *closure)
{
    return PyBool_FromLong(FL_TASK(self)->log_destroy_pending);
}

static int
set_log_destroy_pending(PyObject *self, PyObject *value, void *closure)
{
    if (value == NULL) {
        PyErr_SetString(PyExc_AttributeError, "cannot delete attribute");
        return -1;
    }
    int truth = PyObject_IsTrue(value);
    if (truth < 0) {
        return -1;
    }
    FL_TASK(self)->log_destroy_pending = (unsigned char)truth;
    return 0;
}

static PyGetSetDef task_getset[] = {
    {"_log_destroy_pending", get_log_destroy_pending, set_log_destroy_pending, NULL, NULL},
    {NULL},
};

/* Plain fields: members, moved to fl_fields_offset when the type is made. */
static PyMemberDef task_members[] = {
    FL_MEMBER("_coro", T_OBJECT, FlTaskFields, coro),
    FL_MEMBER("_fut_waiter", T_OBJECT, FlTaskFields, fut_waiter),
    FL_MEMBER("_must_cancel", T_BOOL, FlTaskFields, must_cancel),
    {NULL},
};

static PyMethodDef task_methods[] = {
    {"cancel", (PyCFunction)(void (*)(void))task_py_cancel,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"set_result", task_set_result, METH_O, NULL},
    {"set_exception", task_set_exception, METH_O, NULL},
    {"get_coro", task_get_coro, METH_NOARGS, NULL},
    {"get_name", task_get_name, METH_NOARGS, NULL},
    {"set_name", task_set_name, METH_O, NULL},
    {"get_stack", (PyCFunction)(void (*)(void))task_get_stack,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"print_stack", (PyCFunction)(void (*)(void))task_print_stack,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"cancelling", task_cancelling, METH_NOARGS, NULL},
    {"uncancel", task_uncancel, METH_NOARGS, NULL},
#if PY_VERSION_HEX >= 0x030C0000
    {"get_context", task_get_context, METH_NOARGS, NULL},
#endif
    {NULL, NULL, 0, NULL},
};

/* ---- lifetime ---- */

static int
task_tp_traverse(PyObject *self, visitproc visit, void *arg)
{
    FlTaskFields *t = FL_TASK(self);
    Py_VISIT(Py_TYPE(self));
    Py_VISIT(t->coro);
    Py_VISIT(t->context);
    Py_VISIT(t->name);
    Py_VISIT(t->fut_waiter);
    Py_VISIT(t->step_exc);
    int r = fl_base_traverse_task(self, visit, arg);
    r = r ? r : fl_future_visit_dict(self, visit, arg);
    return r ? r : fl_future_traverse(self, visit, arg);
}

static int
task_tp_clear(PyObject *self)
{
    task_clear_fields(self);
    fl_future_clear(self);
    fl_future_clear_dict(self);
    return 0;
}

static void
task_tp_finalize(PyObject *self)
{
    FlTaskFields *t = FL_TASK(self);
    if (t->fut.state == FL_PENDING && t->log_destroy_pending && t->fut.loop != NULL) {
        PyObject *exc = fl_err_get_raised();
        /* Strong references: building the report may run Python code. */
        PyObject *loop = Py_NewRef(t->fut.loop);
        PyObject *source_tb = Py_XNewRef(t->fut.source_traceback);
        PyObject *context = PyDict_New();
        PyObject *message = PyUnicode_FromString("Task was destroyed but it is pending!");
        PyObject *r = NULL;
        if (context != NULL && message != NULL
                && PyDict_SetItemString(context, "task", self) == 0
                && PyDict_SetItemString(context, "message", message) == 0
                && (source_tb == NULL
                    || PyDict_SetItemString(context, "source_traceback",
                                            source_tb) == 0)) {
            r = PyObject_CallMethod(loop, "call_exception_handler", "O", context);
        }
        if (r == NULL) {
            PyErr_WriteUnraisable(self);
        }
        Py_XDECREF(r);
        Py_XDECREF(message);
        Py_XDECREF(context);
        Py_DECREF(loop);
        Py_XDECREF(source_tb);
        if (exc != NULL) {
            fl_err_set_raised(exc);
        }
    }
    fl_future_finalize_report(self);
}

static PyType_Slot task_slots[] = {
    {Py_tp_new, task_tp_new},
    {Py_tp_init, task_tp_init},
    {Py_tp_dealloc, fl_future_dealloc},
    {Py_tp_finalize, task_tp_finalize},
    {Py_tp_traverse, task_tp_traverse},
    {Py_tp_clear, task_tp_clear},
    {Py_tp_repr, task_tp_repr},
    {Py_tp_iter, fl_future_iter},
    {Py_am_await, fl_future_iter},
    {Py_tp_methods, task_methods},
    {Py_tp_getset, task_getset},
    {Py_tp_doc, "fastloop's Task, in C; a subclass of asyncio.Task."},
    {0, NULL},
};

PyType_Spec fl_task_spec = {
    .name = "fastloop.Task",
    .basicsize = 0,     /* set by fl_future_prepare_specs() */
    .flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_HAVE_GC | Py_TPFLAGS_BASETYPE,
    .slots = task_slots,
};

int
fl_task_type_ready(PyTypeObject *task_type)
{
    static int members_placed;
    if (!members_placed) {
        fl_members_at(task_members, fl_fields_offset);
        members_placed = 1;
    }
    if (fl_type_add_members(task_type, task_members) < 0) {
        return -1;
    }
    return fl_future_add_common(task_type, 1);
}
