/* What the transports (stream.c, udp.c) and the listener (server.c) share:
   how a failed call is reported or leaves the loop, the cold-path reports
   written in Python (fastloop._network), and the method names they call. */
#ifndef FL_TRANSPORT_H
#define FL_TRANSPORT_H

#include "loop.h"

/* SystemExit or KeyboardInterrupt is set: it must stop the loop. */
int fl_transport_error_is_fatal(void);

/* The current exception as an object, for a report; NULL if the error
   must stop the loop (it stays set). */
PyObject *fl_transport_take_nonfatal(void);

/* A libev callback cannot return an error: the one set leaves the loop
   from the ready queue instead, as asyncio lets SystemExit and
   KeyboardInterrupt out of the callback that raised them. */
void fl_transport_stash_fatal(FlLoop *loop);

/* Calls fastloop._network.<name>(*args) and steals args (NULL: an error
   is already set). 0, or -1 with an exception. */
int fl_transport_call_helper(const char *name, PyObject *args);

/* module.name, imported. */
PyObject *fl_transport_import_attr(const char *module, const char *name);

/* Interned method names; set by fl_transport_module_init. */
extern PyObject *fl_str_close, *fl_str_fileno;

int fl_transport_module_init(void);

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

#endif /* FL_TRANSPORT_H */
