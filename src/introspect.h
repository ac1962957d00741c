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
    if (fl_base.on) {
        Py_XSETREF(*FL_BASE_FIELD(obj, off), Py_XNewRef(value));
    }
}

/* The task list all_tasks() and `asyncio ps` walk: linked into the
   current thread's list, unlinked when done or freed. */
void fl_base_register_task(PyObject *task);
void fl_base_unregister_task(PyObject *task);
static inline int
fl_base_task_registered(PyObject *task)
{
    return ((fl_llist_node *)((char *)task + fl_base.node))->next != NULL;
}

/* The call graph's "awaited by" (future_add_to_awaited_by and discard). */
int fl_base_awaited_by_add(PyObject *fut, PyObject *waiter);
int fl_base_awaited_by_discard(PyObject *fut, PyObject *waiter);
/* The _asyncio_awaited_by attribute: a frozenset, or None. */
PyObject *fl_base_awaited_by_get(PyObject *fut);

/* The references the published fields hold, for tp_traverse/tp_clear:
   "awaited by" (Future and Task), name and coroutine (Task only). Clearing
   a task also takes it out of its task list. */
int fl_base_traverse_future(PyObject *obj, visitproc visit, void *arg);
int fl_base_traverse_task(PyObject *task, visitproc visit, void *arg);
void fl_base_clear_future(PyObject *obj);
void fl_base_clear_task(PyObject *task);

/* asyncio.current_task() on 3.14+: the thread state's running task. */
static inline PyObject **
fl_base_running_task_slot(void)
{
    return FL_BASE_FIELD(PyThreadState_Get(), fl_base.ts_running_task);
}
static inline PyObject *
fl_base_running_loop(void)
{
    return *FL_BASE_FIELD(PyThreadState_Get(), fl_base.ts_running_loop);
}

#endif /* FL_INTROSPECT_H */
