/* fastloop.Future and the future core that fastloop.Task shares.

   Both types subclass asyncio's own (C) Future and Task, so isinstance()
   checks in user code and libraries hold. The base's fields are private to
   each CPython version: we never read or write them. Our own fields live
   after the base's storage, at fl_fields_offset, the same offset for Future
   and Task so that one piece of code serves both. */
#ifndef FL_FUTURE_H
#define FL_FUTURE_H

#include "core/state.h"
#include "core/ready.h"

struct FlLoop;

enum { FL_PENDING = 0, FL_CANCELLED, FL_FINISHED };

/* A done callback: a Python callable run with (future,) in `context`, or,
   when `wake` is set, a fastloop task waiting in C (fn is the task). */
typedef struct {
    PyObject *fn;
    PyObject *context;
    fl_ready_fn wake;
} fl_fut_callback;

typedef struct {
    PyObject *loop;             /* NULL until __init__ ran */
    struct FlLoop *fl_loop;     /* == loop when it is a fastloop loop */
    PyObject *result;
    PyObject *exception;
    PyObject *exception_tb;
    PyObject *cancel_msg;
    PyObject *cancelled_exc;
    PyObject *source_traceback;
    fl_fut_callback *callbacks; /* inline_callback, or a PyMem array */
    Py_ssize_t ncallbacks;
    Py_ssize_t callbacks_cap;
    fl_fut_callback inline_callback;
    unsigned char state;
    unsigned char log_tb;
    unsigned char blocking;     /* _asyncio_future_blocking */
} FlFutureFields;

extern Py_ssize_t fl_fields_offset;
extern PyTypeObject *fl_future_type_g;    /* set once at module exec */
extern PyTypeObject *fl_task_type_g;

#define FL_FUT(obj) ((FlFutureFields *)((char *)(obj) + fl_fields_offset))

/* Sets fl_fields_offset and the specs' sizes from asyncio's types. */
int fl_future_prepare_specs(PyTypeObject *base_future, PyTypeObject *base_task,
                            Py_ssize_t task_fields_size);

/* Is obj a fastloop Future or Task (the types whose fields we own)? */
int fl_future_is_ours(PyObject *obj);
/* Exactly fastloop.Future or Task: a subclass may override methods, so
   only these take the C fast paths. */
int fl_future_is_exact(PyObject *obj);

/* obj.name(*args, context=context): how Future and Task reach loops and
   futures that are not fastloop's. nargs is at most 2. */
int fl_call_with_context(fl_state *st, PyObject *obj, const char *name,
                         PyObject *const *args, Py_ssize_t nargs,
                         PyObject *context);

/* Future core, shared with Task. */
/* 3.15+: true (with RuntimeError set) when `self` was initialized already,
   as asyncio's Future and Task refuse a second __init__ from 3.15 on. */
int fl_future_refuses_reinit(PyObject *self);
int fl_future_init(fl_state *st, PyObject *self, PyObject *loop);
int fl_future_set_result(fl_state *st, PyObject *self, PyObject *result);
int fl_future_set_exception(fl_state *st, PyObject *self, PyObject *exc);
int fl_future_cancel(fl_state *st, PyObject *self, PyObject *msg);
PyObject *fl_future_make_cancelled_error(fl_state *st, PyObject *self);
/* Adds a done callback; runs it soon when already done. */
int fl_future_add_callback(fl_state *st, PyObject *self, PyObject *fn,
                           PyObject *context, fl_ready_fn wake);
/* The future's result as a new reference, or NULL with its error set. */
PyObject *fl_future_result(fl_state *st, PyObject *self);
int fl_future_traverse(PyObject *self, visitproc visit, void *arg);
/* The instance dict, kept in the base's storage (managed on 3.13). */
int fl_future_visit_dict(PyObject *self, visitproc visit, void *arg);
void fl_future_clear_dict(PyObject *self);
void fl_future_clear(PyObject *self);
/* The finalizer's "exception was never retrieved" report. */
void fl_future_finalize_report(PyObject *self);
/* Looks up `name` on the loop of a future, e.g. for call_exception_handler. */
int fl_future_loop_debug(PyObject *self);

PyObject *fl_future_iter_new(fl_state *st, PyObject *future);
/* Adds Future's shared methods and getters to a type (Task) that lacks them. */
int fl_future_add_common(PyTypeObject *type, int is_task);

/* Methods, getters and slots Task reuses from Future. */
extern PyMethodDef fl_future_common_methods[];
extern PyGetSetDef fl_future_common_getset[];
PyObject *fl_future_iter(PyObject *self);
void fl_future_dealloc(PyObject *self);

extern PyType_Spec fl_future_spec;
extern PyType_Spec fl_future_iter_spec;

#endif /* FL_FUTURE_H */
