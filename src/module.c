/* fastloop._core: module state, types, and the hooks the Python side sets. */
#include <stddef.h>
#include "module.h"
#include "loop.h"
#include "handle.h"
#include "future.h"
#include "task.h"
#include "sock.h"
#include "transport.h"
#include "stream.h"
#include "server.h"
#include "udp.h"
#include "process.h"
#include "introspect.h"

static struct PyModuleDef fl_module_def;

#if PY_VERSION_HEX < 0x030B0000
/* PyType_GetModuleByDef() arrived in 3.11: walk the MRO for our module. */
static PyObject *
PyType_GetModuleByDef(PyTypeObject *type, PyModuleDef *def)
{
    PyObject *mro = type->tp_mro;
    for (Py_ssize_t i = 0; mro && i < PyTuple_GET_SIZE(mro); i++) {
        PyTypeObject *base = (PyTypeObject *)PyTuple_GET_ITEM(mro, i);
        if (!(base->tp_flags & Py_TPFLAGS_HEAPTYPE)) {
            continue;
        }
        PyObject *module = ((PyHeapTypeObject *)base)->ht_module;
        if (module != NULL && PyModule_GetDef(module) == def) {
            return module;
        }
    }
    PyErr_Format(PyExc_TypeError, "%s is not a fastloop type", type->tp_name);
    return NULL;
}
#endif

fl_state *
fl_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &fl_module_def);
    if (module == NULL) {
        return NULL;
    }
    return PyModule_GetState(module);
}

static inline fl_state *
get_state(PyObject *module)
{
    return PyModule_GetState(module);
}

/* What _set_helpers() accepts: each keyword names a slot of the state. */
static const struct {
    const char *name;
    size_t offset;
} helper_slots[] = {
#define SLOT(name, field) {name, offsetof(fl_state, field)}
    SLOT("handle_repr", helper_handle_repr),
    SLOT("handle_repr_info", helper_handle_repr_info),
    SLOT("callback_error", helper_callback_error),
    SLOT("slow_callback", helper_slow_callback),
    SLOT("extract_stack", helper_extract_stack),
    SLOT("check_callback", helper_check_callback),
    SLOT("future_repr", helper_future_repr),
    SLOT("task_repr", helper_task_repr),
    SLOT("repr_info", helper_repr_info),
    SLOT("task_get_stack", helper_task_get_stack),
    SLOT("task_print_stack", helper_task_print_stack),
    SLOT("task_step_error", helper_task_step_error),
    SLOT("CancelledError", cancelled_error),
    SLOT("InvalidStateError", invalid_state_error),
    SLOT("iscoroutine", iscoroutine),
    SLOT("get_event_loop", get_event_loop),
    SLOT("enter_task", enter_task),
    SLOT("leave_task", leave_task),
    SLOT("current_tasks", current_tasks),
    SLOT("register_task", register_task),
    SLOT("task_registry", task_registry),
    SLOT("swap_current_task", swap_current_task),
    SLOT("register_eager_task", register_eager_task),
    SLOT("unregister_eager_task", unregister_eager_task),
    SLOT("future_add_to_awaited_by", awaited_by_add),
    SLOT("future_discard_from_awaited_by", awaited_by_discard),
#undef SLOT
};
#define N_HELPER_SLOTS (sizeof(helper_slots) / sizeof(helper_slots[0]))

static PyObject **
helper_slot(fl_state *st, size_t i)
{
    return (PyObject **)((char *)st + helper_slots[i].offset);
}

/* _set_helpers(**helpers): the Python side hands over, once, the Python
   functions and asyncio objects the C code calls on cold paths. Every
   slot must be given. */
static PyObject *
set_helpers(PyObject *module, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || kwds == NULL
            || PyDict_GET_SIZE(kwds) != (Py_ssize_t)N_HELPER_SLOTS) {
        PyErr_Format(PyExc_TypeError, "_set_helpers() takes exactly %d keywords",
                     (int)N_HELPER_SLOTS);
        return NULL;
    }
    fl_state *st = get_state(module);
    for (size_t i = 0; i < N_HELPER_SLOTS; i++) {
        PyObject *value = PyDict_GetItemString(kwds, helper_slots[i].name);
        if (value == NULL) {
            PyErr_Format(PyExc_TypeError, "_set_helpers() needs %s",
                         helper_slots[i].name);
            return NULL;
        }
        Py_XSETREF(*helper_slot(st, i), Py_NewRef(value));
    }
    Py_RETURN_NONE;
}

/* Registered with os.register_at_fork(after_in_child=...). */
static PyObject *
after_fork_in_child(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    fl_loops_after_fork(get_state(module));
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
    {"_set_helpers", (PyCFunction)(void (*)(void))set_helpers,
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

/* Adds methods to a type made from a spec (whose spec takes one table). */
int
fl_type_add_methods(PyTypeObject *type, PyMethodDef *methods)
{
    for (PyMethodDef *m = methods; m->ml_name != NULL; m++) {
        PyObject *descr = PyDescr_NewMethod(type, m);
        if (descr == NULL
                || PyDict_SetItemString(type->tp_dict, m->ml_name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    PyType_Modified(type);
    return 0;
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
    fl_state *st = get_state(module);
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
            || fl_stream_module_init(module, st) < 0
            || fl_server_module_init(module, st) < 0
            || fl_udp_module_init(module) < 0
            || fl_process_module_init(module) < 0) {
        return -1;
    }
    fl_loop_install_syserr_cb();
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    fl_state *st = get_state(module);
    Py_VISIT(st->loop_type);
    Py_VISIT(st->handle_type);
    Py_VISIT(st->timer_handle_type);
    Py_VISIT(st->threadsafe_handle_type);
    Py_VISIT(st->future_type);
    Py_VISIT(st->task_type);
    Py_VISIT(st->future_iter_type);
    for (size_t i = 0; i < N_HELPER_SLOTS; i++) {
        Py_VISIT(*helper_slot(st, i));
    }
    return 0;
}

static int
module_clear(PyObject *module)
{
    fl_state *st = get_state(module);
    Py_CLEAR(st->loop_type);
    Py_CLEAR(st->handle_type);
    Py_CLEAR(st->timer_handle_type);
    Py_CLEAR(st->threadsafe_handle_type);
    Py_CLEAR(st->future_type);
    Py_CLEAR(st->task_type);
    Py_CLEAR(st->future_iter_type);
    for (size_t i = 0; i < N_HELPER_SLOTS; i++) {
        Py_CLEAR(*helper_slot(st, i));
    }
    Py_CLEAR(st->kwnames_context);
    return 0;
}

static void
module_free(void *module)
{
    module_clear(module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
#ifdef Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED
    {Py_mod_multiple_interpreters, Py_MOD_MULTIPLE_INTERPRETERS_NOT_SUPPORTED},
#endif
    {0, NULL},
};

static struct PyModuleDef fl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastloop._core",
    .m_doc = "The C core of fastloop: an asyncio event loop on libev.",
    .m_size = sizeof(fl_state),
    .m_methods = module_methods,
    .m_slots = module_slots,
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};

PyMODINIT_FUNC
PyInit__core(void)
{
    return PyModuleDef_Init(&fl_module_def);
}
