/* fastloop._core, the roof: PyInit, module_exec and the method tables.
   It alone sees every floor, and calls only down. */
#include <stddef.h>
#include "core/state.h"
#include "loop/loop.h"
#include "callbacks/handle.h"
#include "futures/future.h"
#include "futures/task.h"
#include "transports/sock.h"
#include "transports/transport.h"
#include "transports/stream.h"
#include "transports/tls.h"
#include "transports/server.h"
#include "transports/udp.h"
#include "transports/process.h"
#include "futures/introspect.h"

/* Registered with os.register_at_fork(after_in_child=...). */
static PyObject *
after_fork_in_child(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    fl_loops_after_fork(fl_state_of_module(module));
    Py_RETURN_NONE;
}

static PyObject *
base_fields_bound(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return PyBool_FromLong(fl_base.on);
}

static PyObject *
libev_version(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(ii)", ev_version_major(), ev_version_minor());
}

static PyMethodDef module_methods[] = {
    {"_set_helpers", (PyCFunction)(void (*)(void))fl_state_set_helpers,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_after_fork_in_child", after_fork_in_child, METH_NOARGS, NULL},
    {"_bind_base_fields", (PyCFunction)(void (*)(void))fl_base_bind, METH_FASTCALL,
     "Checks asyncio's published debug offsets and keeps those fields current."},
    {"_base_fields_bound", base_fields_bound, METH_NOARGS, NULL},
    {"libev_version", libev_version, METH_NOARGS,
     "The (major, minor) version of the libev fastloop runs on."},
    {NULL, NULL, 0, NULL},
};

static int
add_type(PyObject *module, PyType_Spec *spec, PyObject *base,
         PyTypeObject **slot, const char *name)
{
    PyObject *type = PyType_FromModuleAndSpec(module, spec, base);
    if (type == NULL) {
        return -1;
    }
    *slot = (PyTypeObject *)type;
    return PyModule_AddObjectRef(module, name, type);
}

/* fastloop.Future and Task subclass asyncio's own C types. */
static int
add_future_types(PyObject *module, fl_state *st)
{
    PyObject *asyncio = PyImport_ImportModule("asyncio");
    if (asyncio == NULL) {
        return -1;
    }
    PyObject *base_future = PyObject_GetAttrString(asyncio, "Future");
    PyObject *base_task = PyObject_GetAttrString(asyncio, "Task");
    Py_DECREF(asyncio);
    int r = -1;
    if (base_future == NULL || base_task == NULL) {
        goto done;
    }
    if (!PyType_Check(base_future) || !PyType_Check(base_task)) {
        PyErr_SetString(PyExc_ImportError, "asyncio.Future/Task are not types");
        goto done;
    }
    if (fl_future_prepare_specs((PyTypeObject *)base_future,
                                (PyTypeObject *)base_task,
                                sizeof(FlTaskFields)) < 0
            || add_type(module, &fl_future_iter_spec, NULL,
                        &st->future_iter_type, "FutureIter") < 0
            || add_type(module, &fl_future_spec, base_future,
                        &st->future_type, "Future") < 0
            || add_type(module, &fl_task_spec, base_task,
                        &st->task_type, "Task") < 0
            || (fl_future_type_g = st->future_type, fl_task_type_g = st->task_type,
                fl_future_add_common(st->future_type, 0) < 0)
            || fl_task_type_ready(st->task_type) < 0) {
        goto done;
    }
    r = 0;
done:
    Py_XDECREF(base_future);
    Py_XDECREF(base_task);
    return r;
}

/* LoopCore methods that live in the files of their concern (sock.c, ...),
   one table per file; NULL-terminated. */
static PyMethodDef *loop_method_tables[] = {
    fl_sock_loop_methods,
    NULL,
};

static int
add_loop_methods(PyTypeObject *loop_type)
{
    for (PyMethodDef **t = loop_method_tables; *t != NULL; t++) {
        if (fl_type_add_methods(loop_type, *t) < 0) {
            return -1;
        }
    }
    return 0;
}

/* fastloop keeps process-wide pointers to its types (fl_future_type_g and
   others, for checks on hot paths that have no module state at hand): a
   second interpreter loading it would repoint them at its own types, and
   leave them dangling once it is freed (issue #10, C9). So it loads in the
   main interpreter only: Py_mod_multiple_interpreters refuses isolated
   interpreters on 3.12+, and this check, which runs before anything is
   touched, refuses every other one, legacy sub-interpreters included, on
   every version. */
static int
check_main_interpreter(void)
{
    if (PyInterpreterState_Get() != PyInterpreterState_Main()) {
        PyErr_SetString(PyExc_ImportError,
                        "fastloop._core does not support loading in "
                        "subinterpreters");
        return -1;
    }
    return 0;
}

static int
module_exec(PyObject *module)
{
    if (check_main_interpreter() < 0) {
        return -1;
    }
    fl_state *st = fl_state_of_module(module);
    st->kwnames_context = Py_BuildValue("(s)", "context");
    if (st->kwnames_context == NULL) {
        return -1;
    }
    if (fl_handle_add_types(module, st) < 0
            || add_type(module, &fl_loop_spec, NULL, &st->loop_type,
                        "LoopCore") < 0
            || add_loop_methods(st->loop_type) < 0
            || add_future_types(module, st) < 0
            || fl_sock_module_init(module) < 0
            || fl_transport_module_init() < 0
            || fl_stream_module_init(module) < 0
            || fl_tls_module_init(module) < 0
            || fl_server_module_init(module) < 0
            || fl_udp_module_init(module) < 0
            || fl_process_module_init(module) < 0) {
        return -1;
    }
    fl_loop_install_syserr_cb();
    return 0;
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

PyMODINIT_FUNC
PyInit__core(void)
{
    fl_module_def.m_methods = module_methods;
    fl_module_def.m_slots = module_slots;
    return PyModuleDef_Init(&fl_module_def);
}
