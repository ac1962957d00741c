/* Module state shared by every file: types, interned names, Python helpers. */
#ifndef FL_MODULE_H
#define FL_MODULE_H

#include "compat.h"

struct FlLoop;

typedef struct {
    PyTypeObject *loop_type;
    PyTypeObject *handle_type;
    PyTypeObject *timer_handle_type;

    /* Cold-path helpers written in Python (fastloop/_helpers.py), handed
       over once by _core._set_helpers() when the package is imported. */
    PyObject *helper_handle_repr;        /* (handle) -> str */
    PyObject *helper_callback_error;     /* (handle, exc) -> None */
    PyObject *helper_slow_callback;      /* (handle, seconds) -> None */
    PyObject *helper_extract_stack;      /* () -> list, caller's stack */
    PyObject *helper_check_callback;     /* (callback, method_name) -> None */

    PyObject *str_call_exception_handler;
    PyObject *str_fileno;
    PyObject *str_dispatch_signal;

    /* Every open loop, so that a forked child can re-arm their kernel state. */
    struct FlLoop *open_loops;
} fl_state;

fl_state *fl_state_from_type(PyTypeObject *type);

#endif /* FL_MODULE_H */
