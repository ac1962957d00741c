/* Module state shared by every file: types, interned names, Python helpers.
   The ground floor (CPython's _asynciomodule.c keeps its state struct and
   accessors the same way): state.c owns the module definition's state half
   (size, traverse, clear) and the accessors; module.c, the roof, adds the
   methods and the exec slot. */
#ifndef FL_STATE_H
#define FL_STATE_H

#include "compat.h"
#include <stddef.h>
#include <structmember.h>

struct FlLoop;

typedef struct {
    PyTypeObject *loop_type;
    PyTypeObject *handle_type;
    PyTypeObject *timer_handle_type;
    PyTypeObject *threadsafe_handle_type;   /* 3.14+, else NULL */
    PyTypeObject *future_type;
    PyTypeObject *task_type;
    PyTypeObject *future_iter_type;

    /* Cold-path helpers written in Python (fastloop/_helpers.py), handed
       over once by _core._set_helpers() when the package is imported. */
    PyObject *helper_handle_repr;        /* (handle) -> str */
    PyObject *helper_handle_repr_info;   /* (handle) -> list */
    PyObject *helper_callback_error;     /* (handle, exc) -> None */
    PyObject *helper_slow_callback;      /* (handle, seconds) -> None */
    PyObject *helper_extract_stack;      /* () -> list, caller's stack */
    PyObject *helper_check_callback;     /* (callback, method_name) -> None */
    PyObject *helper_future_repr;        /* (future) -> str */
    PyObject *helper_task_repr;          /* (task) -> str */
    PyObject *helper_task_get_stack;     /* (task, limit) -> list */
    PyObject *helper_task_print_stack;   /* (task, limit, file) -> None */
    PyObject *helper_task_step_error;    /* (task, exc) -> None: a step failed */

    /* asyncio's objects fastloop's Future and Task work with, also handed
       over by _set_helpers(). */
    PyObject *cancelled_error;
    PyObject *invalid_state_error;
    PyObject *iscoroutine;               /* asyncio.coroutines.iscoroutine */
    PyObject *get_event_loop;            /* for Future(loop=None) */
    PyObject *enter_task;
    PyObject *leave_task;
    PyObject *current_tasks;             /* the dict they keep, or None */
    PyObject *register_task;
    PyObject *task_registry;             /* the set inside asyncio's WeakSet, or None */
    PyObject *swap_current_task;         /* 3.12+, else None */
    PyObject *register_eager_task;       /* 3.12+, else None */
    PyObject *unregister_eager_task;     /* 3.12+, else None */
    PyObject *awaited_by_add;            /* 3.14+ future_add_to_awaited_by, else None */
    PyObject *awaited_by_discard;        /* 3.14+ future_discard_from_awaited_by */

    unsigned long long task_name_counter;

    PyObject *kwnames_context;           /* ("context",) for vectorcalls */

    /* Every open loop, so that a forked child can re-arm their kernel state. */
    struct FlLoop *open_loops;
} fl_state;

/* The module definition: its state half is filled in here; module.c sets
   m_methods and m_slots before PyModuleDef_Init(). */
extern struct PyModuleDef fl_module_def;

/* The state of the module that made `type` (or a base of it). */
fl_state *fl_state_from_type(PyTypeObject *type);

static inline fl_state *
fl_state_of_module(PyObject *module)
{
    return PyModule_GetState(module);
}

/* The methods Future/Task and Handle/TimerHandle share are bound to
   asyncio's base type (neither of a pair subclasses the other: both extend
   asyncio's types), so each checks that it got one of ours, `is_ours(self)`,
   before it touches our fields; TypeError names `what` otherwise. */
#define FL_REQUIRE_OURS(self, is_ours, what, ret)                            \
    do {                                                                     \
        if (!is_ours(self)) {                                                \
            PyErr_Format(PyExc_TypeError, "a fastloop %s is required, not %s", \
                         what, Py_TYPE(self)->tp_name);                      \
            return ret;                                                      \
        }                                                                    \
    } while (0)

/* The one way to define a plain attribute (a field read as it is): a
   member table, READONLY. Offsets are from the start of `ctype`; where our
   fields follow a base's storage whose size is known only at run time,
   fl_members_at() moves the table there once, before the type is made.
   Getters and setters by hand remain for what is computed or settable. */
#define FL_MEMBER(name, type, ctype, field) \
    {name, type, offsetof(ctype, field), READONLY, NULL}

/* Adds `at` to every offset of a NULL-terminated member table. */
void fl_members_at(PyMemberDef *members, Py_ssize_t at);

/* Adds methods to a type made from a spec (whose spec takes one table). */
int fl_type_add_methods(PyTypeObject *type, PyMethodDef *methods);

/* Adds a member table to a type made from a spec, where the table's
   offsets are known only once the type's base is (fl_members_at); the
   descriptors check the instance's type themselves. */
int fl_type_add_members(PyTypeObject *type, PyMemberDef *members);

/* _set_helpers(**helpers): the Python side hands over, once, the Python
   functions and asyncio objects the C code calls on cold paths. */
PyObject *fl_state_set_helpers(PyObject *module, PyObject *args, PyObject *kwds);

#endif /* FL_STATE_H */
