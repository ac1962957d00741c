/* CPython 3.14+: the few fields of asyncio's own Task/Future struct, and of
   the thread state, that asyncio's introspection reads.

   From 3.14 on, asyncio.all_tasks() walks per-thread linked lists threaded
   through the base Task struct, asyncio.current_task() reads the thread
   state, the call graph reads the base's "awaited by" field, and
   `python -m asyncio ps` reads name, coroutine and links straight out of
   the base struct's memory in another process. CPython publishes the
   offsets of exactly these fields (Py_AsyncioModuleDebugOffsets, in the
   .AsyncioDebug ELF section) for those tools. fastloop reads them at import
   (fastloop/_introspection.py), checks them against live asyncio objects
   (fl_base_bind) and keeps these fields current; every other base field
   stays untouched.

   Before 3.14, or when the offsets could not be read and checked,
   fl_base.on is 0 and every helper here is a no-op: callers fall back to
   asyncio's functions. */
#ifndef FL_INTROSPECT_H
#define FL_INTROSPECT_H

#include "compat.h"

typedef struct fl_llist_node {
    struct fl_llist_node *next;
    struct fl_llist_node *prev;
} fl_llist_node;

typedef struct {
    int on;
    /* In asyncio's Task struct (the Future-shared ones hold for Future). */
    Py_ssize_t name, coro, is_task, node, awaited_by, awaited_by_is_set;
    /* In the thread state. */
    Py_ssize_t ts_running_loop, ts_running_task, ts_tasks_head;
} fl_base_offsets;

extern fl_base_offsets fl_base;

/* Whether the fields are kept: a constant 0 before 3.14, so that every
   use below folds away there. */
#if PY_VERSION_HEX >= 0x030E0000
#define FL_BASE_ON (fl_base.on)
#else
#define FL_BASE_ON 0
#endif

#define FL_BASE_FIELD(obj, off) ((PyObject **)((char *)(obj) + (off)))
#define FL_BASE_BYTE(obj, off) ((char *)(obj) + (off))

/* _core._bind_base_fields(offsets, probe...): checks the published offsets
   against objects asyncio itself has just set up, and switches on. */
PyObject *fl_base_bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs);

/* A task's published fields: is-task flag, name, coroutine. */
void fl_base_init_task(PyObject *task);
static inline void
fl_base_set(PyObject *obj, Py_ssize_t off, PyObject *value)
{
    if (FL_BASE_ON) {
        Py_XSETREF(*FL_BASE_FIELD(obj, off), Py_XNewRef(value));
    }
}

/* The task list all_tasks() and `asyncio ps` walk: linked into the
   current thread's list, unlinked when done or freed. */
void fl_base_link_task(PyObject *task);
void fl_base_unlink_task(PyObject *task);
static inline int
fl_base_task_registered(PyObject *task)
{
    return ((fl_llist_node *)((char *)task + fl_base.node))->next != NULL;
}
static inline void
fl_base_register_task(PyObject *task)
{
    if (FL_BASE_ON && !fl_base_task_registered(task)) {
        fl_base_link_task(task);
    }
}
static inline void
fl_base_unregister_task(PyObject *task)
{
    if (FL_BASE_ON && fl_base_task_registered(task)) {
        fl_base_unlink_task(task);
    }
}

/* The call graph's "awaited by" (future_add_to_awaited_by and discard). */
int fl_base_awaited_by_add_(PyObject *fut, PyObject *waiter);
int fl_base_awaited_by_discard_(PyObject *fut, PyObject *waiter);
/* The common case inline: one waiter comes and goes. */
static inline int
fl_base_awaited_by_add(PyObject *fut, PyObject *waiter)
{
    if (!FL_BASE_ON) {
        return 0;
    }
    PyObject **slot = FL_BASE_FIELD(fut, fl_base.awaited_by);
    if (*slot == NULL) {
        *slot = Py_NewRef(waiter);
        *FL_BASE_BYTE(fut, fl_base.awaited_by_is_set) = 0;
        return 0;
    }
    return fl_base_awaited_by_add_(fut, waiter);
}
static inline int
fl_base_awaited_by_discard(PyObject *fut, PyObject *waiter)
{
    if (!FL_BASE_ON) {
        return 0;
    }
    PyObject **slot = FL_BASE_FIELD(fut, fl_base.awaited_by);
    if (*slot == waiter) {
        *slot = NULL;
        Py_DECREF(waiter);
        return 0;
    }
    return *slot == NULL ? 0 : fl_base_awaited_by_discard_(fut, waiter);
}
/* The _asyncio_awaited_by attribute: a frozenset, or None. */
PyObject *fl_base_awaited_by_get(PyObject *fut);

/* The references the published fields hold, for tp_traverse/tp_clear:
   "awaited by" (Future and Task), name and coroutine (Task only). Clearing
   a task also takes it out of its task list. */
int fl_base_traverse_future_(PyObject *obj, visitproc visit, void *arg);
int fl_base_traverse_task_(PyObject *task, visitproc visit, void *arg);
void fl_base_clear_future_(PyObject *obj);
void fl_base_clear_task_(PyObject *task);
#define fl_base_traverse_future(o, v, a) (FL_BASE_ON ? fl_base_traverse_future_(o, v, a) : 0)
#define fl_base_traverse_task(o, v, a) (FL_BASE_ON ? fl_base_traverse_task_(o, v, a) : 0)
#define fl_base_clear_future(o) \
    do { \
        if (FL_BASE_ON && *FL_BASE_FIELD(o, fl_base.awaited_by) != NULL) { \
            fl_base_clear_future_(o); \
        } \
    } while (0)
#define fl_base_clear_task(o) do { if (FL_BASE_ON) fl_base_clear_task_(o); } while (0)

/* asyncio.current_task() on 3.14+: the thread state's running-task slot,
   once `loop` is checked to be the running loop (NULL with an error if
   not), as asyncio's _enter_task() and _leave_task() check. */
static inline PyObject **
fl_base_running_task_slot(PyObject *loop)
{
#if PY_VERSION_HEX >= 0x030D0000
    char *ts = (char *)PyThreadState_GetUnchecked();
#else
    char *ts = (char *)PyThreadState_Get();
#endif
    if (*(PyObject **)(ts + fl_base.ts_running_loop) != loop) {
        PyErr_Format(PyExc_RuntimeError, "loop %R is not the running loop", loop);
        return NULL;
    }
    return (PyObject **)(ts + fl_base.ts_running_task);
}

#endif /* FL_INTROSPECT_H */
