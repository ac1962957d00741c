#include "futures/introspect.h"

fl_base_offsets fl_base;

/* Py_AsyncioModuleDebugOffsets, as 13 integers in the order CPython lays
   them out: the Task object's size and offsets, the interpreter state's,
   the thread state's. */
enum {
    OFF_TASK_SIZE, OFF_NAME, OFF_AWAITED_BY, OFF_IS_TASK, OFF_AWAITED_BY_IS_SET,
    OFF_CORO, OFF_NODE, OFF_INTERP_SIZE, OFF_INTERP_TASKS_HEAD, OFF_TS_SIZE,
    OFF_TS_RUNNING_LOOP, OFF_TS_RUNNING_TASK, OFF_TS_TASKS_HEAD, N_OFFSETS
};

static int
offset_fits(Py_ssize_t off, Py_ssize_t width, Py_ssize_t size, int aligned)
{
    return off >= (Py_ssize_t)sizeof(PyObject) && off + width <= size
           && (!aligned || off % (Py_ssize_t)sizeof(void *) == 0);
}

static int
bind_fail(const char *what)
{
    PyErr_Format(PyExc_RuntimeError,
                 "asyncio's published debug offsets do not match this "
                 "interpreter (%s)", what);
    return -1;
}

/* Every check reads memory only inside the object it was proven to fit. */
static int
check_offsets(Py_ssize_t *o, PyTypeObject *base_task, PyTypeObject *base_future,
              PyObject *task, PyObject *name, PyObject *coro, PyObject *waiter,
              PyObject *running_loop)
{
    Py_ssize_t ptr = (Py_ssize_t)sizeof(void *);
    if (o[OFF_TASK_SIZE] != base_task->tp_basicsize) {
        return bind_fail("Task size");
    }
    if (!offset_fits(o[OFF_NAME], ptr, base_task->tp_basicsize, 1)
            || !offset_fits(o[OFF_CORO], ptr, base_task->tp_basicsize, 1)
            || !offset_fits(o[OFF_NODE], 2 * ptr, base_task->tp_basicsize, 1)
            || !offset_fits(o[OFF_IS_TASK], 1, base_future->tp_basicsize, 0)
            || !offset_fits(o[OFF_AWAITED_BY], ptr, base_future->tp_basicsize, 1)
            || !offset_fits(o[OFF_AWAITED_BY_IS_SET], 1, base_future->tp_basicsize, 0)) {
        return bind_fail("Task field outside the object");
    }
    Py_ssize_t ts_size = o[OFF_TS_SIZE];
    if (ts_size < (Py_ssize_t)sizeof(PyThreadState) || ts_size > (1 << 20)
            || !offset_fits(o[OFF_TS_RUNNING_LOOP], ptr, ts_size, 1)
            || !offset_fits(o[OFF_TS_RUNNING_TASK], ptr, ts_size, 1)
            || !offset_fits(o[OFF_TS_TASKS_HEAD], 2 * ptr, ts_size, 1)) {
        return bind_fail("thread state field outside the thread state");
    }
    if (!PyObject_TypeCheck(task, base_task)) {
        return bind_fail("probe is not an asyncio.Task");
    }
    if (*FL_BASE_FIELD(task, o[OFF_NAME]) != name
            || *FL_BASE_FIELD(task, o[OFF_CORO]) != coro
            || *FL_BASE_BYTE(task, o[OFF_IS_TASK]) != 1
            || *FL_BASE_FIELD(task, o[OFF_AWAITED_BY]) != waiter
            || *FL_BASE_BYTE(task, o[OFF_AWAITED_BY_IS_SET]) != 0) {
        return bind_fail("Task fields");
    }
    char *ts = (char *)PyThreadState_Get();
    fl_llist_node *node = (fl_llist_node *)((char *)task + o[OFF_NODE]);
    if (node->next != (fl_llist_node *)(ts + o[OFF_TS_TASKS_HEAD])
            || node->prev == NULL || node->prev->next != node) {
        return bind_fail("task list");
    }
    if (*FL_BASE_FIELD(ts, o[OFF_TS_RUNNING_LOOP]) != running_loop
            || *FL_BASE_FIELD(ts, o[OFF_TS_RUNNING_TASK]) != task) {
        return bind_fail("thread state");
    }
    return 0;
}

PyObject *
fl_base_bind(PyObject *module, PyObject *const *args, Py_ssize_t nargs)
{
    if (nargs != 8 || !PyTuple_Check(args[0]) || PyTuple_GET_SIZE(args[0]) != N_OFFSETS
            || !PyType_Check(args[1]) || !PyType_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError,
                        "_bind_base_fields(offsets, Task, Future, task, name, "
                        "coro, waiter, running_loop)");
        return NULL;
    }
    Py_ssize_t o[N_OFFSETS];
    for (int i = 0; i < N_OFFSETS; i++) {
        o[i] = PyLong_AsSsize_t(PyTuple_GET_ITEM(args[0], i));
        if (o[i] == -1 && PyErr_Occurred()) {
            return NULL;
        }
    }
    if (check_offsets(o, (PyTypeObject *)args[1], (PyTypeObject *)args[2],
                      args[3], args[4], args[5], args[6], args[7]) < 0) {
        return NULL;
    }
    fl_base = (fl_base_offsets){
        .on = 1,
        .name = o[OFF_NAME],
        .coro = o[OFF_CORO],
        .is_task = o[OFF_IS_TASK],
        .node = o[OFF_NODE],
        .awaited_by = o[OFF_AWAITED_BY],
        .awaited_by_is_set = o[OFF_AWAITED_BY_IS_SET],
        .ts_running_loop = o[OFF_TS_RUNNING_LOOP],
        .ts_running_task = o[OFF_TS_RUNNING_TASK],
        .ts_tasks_head = o[OFF_TS_TASKS_HEAD],
    };
    Py_RETURN_NONE;
}

void
fl_base_init_task(PyObject *task)
{
    if (FL_BASE_ON) {
        *FL_BASE_BYTE(task, fl_base.is_task) = 1;
    }
}

/* The same circular list CPython keeps (pycore_llist.h): each thread
   state holds a head; a task is appended at the tail. With the GIL held,
   as asyncio does on the default build, no lock is needed. */
void
fl_base_link_task(PyObject *task)
{
    fl_llist_node *head = (fl_llist_node *)(
        (char *)PyThreadState_Get() + fl_base.ts_tasks_head);
    fl_llist_node *node = (fl_llist_node *)((char *)task + fl_base.node);
    node->prev = head->prev;
    node->next = head;
    head->prev->next = node;
    head->prev = node;
}

void
fl_base_unlink_task(PyObject *task)
{
    fl_llist_node *node = (fl_llist_node *)((char *)task + fl_base.node);
    node->prev->next = node->next;
    node->next->prev = node->prev;
    node->next = node->prev = NULL;
}

/* One waiter is kept as itself, several in a set, as asyncio does (its
   own C code writes these same fields of our objects). */
int
fl_base_awaited_by_add_(PyObject *fut, PyObject *waiter)
{
    PyObject **slot = FL_BASE_FIELD(fut, fl_base.awaited_by);
    char *is_set = FL_BASE_BYTE(fut, fl_base.awaited_by_is_set);
    if (*slot == NULL) {
        *slot = Py_NewRef(waiter);
        *is_set = 0;
        return 0;
    }
    if (*is_set) {
        return PySet_Add(*slot, waiter);
    }
    PyObject *set = PySet_New(NULL);
    if (set == NULL || PySet_Add(set, *slot) < 0 || PySet_Add(set, waiter) < 0) {
        Py_XDECREF(set);
        return -1;
    }
    Py_SETREF(*slot, set);
    *is_set = 1;
    return 0;
}

int
fl_base_awaited_by_discard_(PyObject *fut, PyObject *waiter)
{
    PyObject **slot = FL_BASE_FIELD(fut, fl_base.awaited_by);
    if (*slot == NULL) {
        return 0;
    }
    if (*slot == waiter) {
        Py_CLEAR(*slot);
        return 0;
    }
    if (*FL_BASE_BYTE(fut, fl_base.awaited_by_is_set)) {
        return PySet_Discard(*slot, waiter) < 0 ? -1 : 0;
    }
    return 0;
}

PyObject *
fl_base_awaited_by_get(PyObject *fut)
{
    if (!FL_BASE_ON) {
        Py_RETURN_NONE;
    }
    PyObject *by = *FL_BASE_FIELD(fut, fl_base.awaited_by);
    if (by == NULL) {
        Py_RETURN_NONE;
    }
    if (*FL_BASE_BYTE(fut, fl_base.awaited_by_is_set)) {
        return PyFrozenSet_New(by);
    }
    PyObject *one = PyTuple_Pack(1, by);
    if (one == NULL) {
        return NULL;
    }
    PyObject *set = PyFrozenSet_New(one);
    Py_DECREF(one);
    return set;
}

int
fl_base_traverse_future_(PyObject *obj, visitproc visit, void *arg)
{
    Py_VISIT(*FL_BASE_FIELD(obj, fl_base.awaited_by));
    return 0;
}

int
fl_base_traverse_task_(PyObject *task, visitproc visit, void *arg)
{
    Py_VISIT(*FL_BASE_FIELD(task, fl_base.name));
    Py_VISIT(*FL_BASE_FIELD(task, fl_base.coro));
    return 0;
}

void
fl_base_clear_future_(PyObject *obj)
{
    Py_CLEAR(*FL_BASE_FIELD(obj, fl_base.awaited_by));
    *FL_BASE_BYTE(obj, fl_base.awaited_by_is_set) = 0;
}

void
fl_base_clear_task_(PyObject *task)
{
    fl_base_unregister_task(task);
    Py_CLEAR(*FL_BASE_FIELD(task, fl_base.name));
    Py_CLEAR(*FL_BASE_FIELD(task, fl_base.coro));
}
