/* Handle and TimerHandle: what call_soon/call_later/add_reader return. */
#ifndef FL_HANDLE_H
#define FL_HANDLE_H

#include <stdint.h>
#include "module.h"
#include "ready.h"

struct FlLoop;

typedef struct {
    PyObject_HEAD
    struct FlLoop *loop;
    PyObject *callback;         /* NULL once cancelled */
    PyObject *args;             /* a tuple; NULL means () */
    PyObject *context;
    PyObject *source_traceback; /* debug mode only */
    PyObject *repr;             /* kept at cancel() in debug mode */
    PyObject *weakreflist;
    char cancelled;
} FlHandle;

typedef struct {
    FlHandle base;
    double when;
    uint64_t seq;               /* FIFO order among equal deadlines */
    char scheduled;             /* still in the loop's timer heap */
} FlTimerHandle;

/* New handle for callback(*args); context NULL or None copies the current one. */
FlHandle *fl_handle_new(struct FlLoop *loop, PyTypeObject *type,
                        PyObject *callback, PyObject *const *args,
                        Py_ssize_t nargs, PyObject *context);

/* The ready-queue function that runs a Handle. */
int fl_handle_run_entry(struct FlLoop *loop, fl_ready_item *item);

/* Runs handle's callback in its context; reports errors through the loop's
   exception handler, except those that must stop the loop. */
int fl_handle_run(FlHandle *handle);

/* The callback of `handle` raised (the error is set): propagate what must
   stop the loop (-1), report the rest to the loop's exception handler. */
int fl_handle_report_error(FlHandle *handle);

void fl_handle_cancel(FlHandle *handle);

extern PyType_Spec fl_handle_spec;
extern PyType_Spec fl_timer_handle_spec;

#endif /* FL_HANDLE_H */
