/* Error helpers, logging and call helpers: the ground floor's one error
   convention. A failed call returns -1 (or NULL) with the exception set;
   what must stop the loop (SystemExit, KeyboardInterrupt) stays set or
   leaves the loop from the ready queue, never through a report. */
#ifndef FL_ERRORS_H
#define FL_ERRORS_H

#include "core/loopcore.h"

/* SystemExit or KeyboardInterrupt is set: it must stop the loop. */
int fl_err_is_fatal(void);

/* The current exception as an object, for a report; NULL if the error
   must stop the loop (it stays set). */
PyObject *fl_err_take_nonfatal(void);

/* A libev callback cannot return an error: the one set leaves the loop
   from the ready queue instead, as asyncio lets SystemExit and
   KeyboardInterrupt out of the callback that raised them. */
void fl_err_stash_fatal(FlLoop *loop);

/* The ready-queue entry that raises its arg (an exception) again: how an
   error caught where none can be returned leaves the loop. */
int fl_err_reraise_entry(FlLoop *loop, fl_ready_item *item);

/* asyncio's logger.<level>(*args, exc_info=exc_info or not given). */
int fl_log(const char *level, PyObject *args, PyObject *exc_info);

/* module.name, imported. */
PyObject *fl_import_attr(const char *module, const char *name);

/* Interns each name into its slot (once: a slot already set is kept). */
typedef struct {
    PyObject **slot;
    const char *name;
} fl_name;

int fl_intern(const fl_name *names, size_t n);

static inline PyObject *
fl_call_method0(PyObject *obj, PyObject *name)
{
    PyObject *args[1] = {obj};
    return PyObject_VectorcallMethod(name, args, 1 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

static inline PyObject *
fl_call_method1(PyObject *obj, PyObject *name, PyObject *arg)
{
    PyObject *args[2] = {obj, arg};
    return PyObject_VectorcallMethod(name, args, 2 | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                     NULL);
}

#endif /* FL_ERRORS_H */
