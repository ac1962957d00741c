/* Handle and TimerHandle: what call_soon/call_later/add_reader return.

   They subclass asyncio.Handle and asyncio.TimerHandle, so isinstance()
   checks hold, and, as for Future and Task, keep their own fields after the
   base's storage (which they never touch), at fl_handle_offset: the same
   offset for both types, so one piece of code serves both. */
#ifndef FL_HANDLE_H
#define FL_HANDLE_H

#include <stdint.h>
#include "core/loopcore.h"

typedef struct {
    struct FlLoop *loop;
    PyObject *callback;         /* NULL once cancelled */
    PyObject *args;             /* a tuple; NULL means () */
    PyObject *context;
    PyObject *source_traceback; /* debug mode only */
    PyObject *repr;             /* kept at cancel() in debug mode */
    char cancelled;
    char is_timer;
    char threadsafe;            /* an FlThreadSafeHandle */
} FlHandle;

typedef struct {
    FlHandle base;
    double when;
    char scheduled;             /* still in the loop's timer heap */
} FlTimerHandle;

#if PY_VERSION_HEX >= 0x030E0000
/* What call_soon_threadsafe() returns from 3.14 on, as asyncio's
   _ThreadSafeHandle: cancel() and cancelled() from another thread wait
   while the callback runs, and a handle cancelled meanwhile never runs.
   The lock is reentrant for the thread that holds it (a callback may
   cancel its own handle). */
#define FL_HAVE_THREADSAFE_HANDLE 1
typedef struct {
    FlHandle base;
    PyMutex lock;
    unsigned long owner;        /* thread holding the lock, or 0 */
    int depth;
} FlThreadSafeHandle;
#endif

/* What fl_handle_new() makes. */
enum { FL_HANDLE_PLAIN, FL_HANDLE_TIMER, FL_HANDLE_THREADSAFE };

extern Py_ssize_t fl_handle_offset;

#define FL_HANDLE(obj) ((FlHandle *)((char *)(obj) + fl_handle_offset))
#define FL_TIMER(obj) ((FlTimerHandle *)((char *)(obj) + fl_handle_offset))

/* A TimerHandle was cancelled: counted while it is still in the loop's
   heap, which prunes cancelled timers once they are many. */
static inline void
fl_timer_cancelled(FlLoop *loop, PyObject *timer)
{
    if (FL_TIMER(timer)->scheduled) {
        loop->timers.cancelled++;
    }
}

/* Creates the two types, subclasses of asyncio's, in `module`. */
int fl_handle_add_types(PyObject *module, fl_state *st);

/* New handle for callback(*args); context NULL or None copies the current
   one. `kind`: FL_HANDLE_PLAIN, _TIMER (a TimerHandle) or _THREADSAFE (a
   plain one before 3.14). */
PyObject *fl_handle_new(struct FlLoop *loop, int kind, PyObject *callback,
                        PyObject *const *args, Py_ssize_t nargs,
                        PyObject *context);

/* The one way to make a handle and queue it: fl_handle_new() for
   args[0](*args[1:nargs]), then onto the loop's ready queue (only if the
   loop is still open: making the handle may run Python code). call_soon()
   is this with FL_HANDLE_PLAIN. A new reference to the queued handle, or
   NULL with an error set. */
PyObject *fl_handle_schedule(FlLoop *loop, int kind, PyObject *const *args,
                             Py_ssize_t nargs, PyObject *context);

/* Is obj a fastloop Handle or TimerHandle? */
int fl_handle_check(PyObject *obj);

/* The ready-queue function that runs a Handle. */
int fl_handle_run_entry(struct FlLoop *loop, fl_ready_item *item);

/* Runs handle's callback in its context; reports errors through the loop's
   exception handler, except those that must stop the loop. */
int fl_handle_run(PyObject *handle);

/* The callback of `handle` raised (the error is set): propagate what must
   stop the loop (-1), report the rest to the loop's exception handler. */
int fl_handle_report_error(PyObject *handle);

void fl_handle_cancel(PyObject *handle);

#endif /* FL_HANDLE_H */
