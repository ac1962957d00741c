/* fastloop.Task: a coroutine driven in C, a subclass of asyncio.Task. */
#ifndef FL_TASK_H
#define FL_TASK_H

#include "futures/future.h"

typedef struct {
    FlFutureFields fut;         /* first: a Task is a future */
    PyObject *coro;
    PyObject *context;
    PyObject *name;             /* NULL: "Task-<name_id>", made on demand */
    unsigned long long name_id;
    PyObject *fut_waiter;
    PyObject *step_exc;         /* thrown into the coroutine at the next step */
    PyObject *registry_ref;     /* our weakref in asyncio's task registry */
    int num_cancels_requested;
    unsigned char must_cancel;
    unsigned char log_destroy_pending;
} FlTaskFields;

#define FL_TASK(obj) ((FlTaskFields *)((char *)(obj) + fl_fields_offset))

extern PyType_Spec fl_task_spec;

struct FlLoop;
/* Is fn the ready-queue function of a task step or wakeup? */
int fl_task_is_step_entry(fl_ready_fn fn);
/* Leaves the task the loop's last step left current (if any). Keeps a
   pending exception. */
int fl_task_leave_current(struct FlLoop *loop);
/* A callable(future) that wakes `task`: for futures that are not ours. */
PyObject *fl_task_wakeup_callable(fl_state *st, PyObject *task);
/* A new fastloop Task, as Task(coro, loop=, name=, context=, eager_start=). */
PyObject *fl_task_new(fl_state *st, PyObject *coro, PyObject *loop,
                      PyObject *name, PyObject *context, int eager);
/* Adds Future's shared methods to the Task type once it exists. */
int fl_task_type_ready(PyTypeObject *task_type);

#endif /* FL_TASK_H */
