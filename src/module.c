/* fastloop._core: module state, types, and the hooks the Python side sets. */
#include "module.h"
#include "loop.h"
#include "handle.h"

static struct PyModuleDef fl_module_def;

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

/* _set_helpers(handle_repr=, callback_error=, slow_callback=,
                extract_stack=, check_callback=) */
static PyObject *
set_helpers(PyObject *module, PyObject *args, PyObject *kwds)
{
    static char *kwlist[] = {"handle_repr", "callback_error", "slow_callback",
                             "extract_stack", "check_callback", NULL};
    PyObject *handle_repr, *callback_error, *slow_callback, *extract_stack,
             *check_callback;
    if (!PyArg_ParseTupleAndKeywords(args, kwds, "$OOOOO:_set_helpers", kwlist,
                                     &handle_repr, &callback_error,
                                     &slow_callback, &extract_stack,
                                     &check_callback)) {
        return NULL;
    }
    fl_state *st = get_state(module);
    Py_XSETREF(st->helper_handle_repr, Py_NewRef(handle_repr));
    Py_XSETREF(st->helper_callback_error, Py_NewRef(callback_error));
    Py_XSETREF(st->helper_slow_callback, Py_NewRef(slow_callback));
    Py_XSETREF(st->helper_extract_stack, Py_NewRef(extract_stack));
    Py_XSETREF(st->helper_check_callback, Py_NewRef(check_callback));
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
libev_version(PyObject *module, PyObject *Py_UNUSED(ignored))
{
    return Py_BuildValue("(ii)", ev_version_major(), ev_version_minor());
}

static PyMethodDef module_methods[] = {
    {"_set_helpers", (PyCFunction)(void (*)(void))set_helpers,
     METH_VARARGS | METH_KEYWORDS, NULL},
    {"_after_fork_in_child", after_fork_in_child, METH_NOARGS, NULL},
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

static int
module_exec(PyObject *module)
{
    fl_state *st = get_state(module);
    st->str_call_exception_handler = PyUnicode_InternFromString("call_exception_handler");
    st->str_fileno = PyUnicode_InternFromString("fileno");
    st->str_dispatch_signal = PyUnicode_InternFromString("_dispatch_signal");
    if (st->str_call_exception_handler == NULL || st->str_fileno == NULL
            || st->str_dispatch_signal == NULL) {
        return -1;
    }
    if (add_type(module, &fl_handle_spec, NULL, &st->handle_type, "Handle") < 0
            || add_type(module, &fl_timer_handle_spec,
                        (PyObject *)st->handle_type, &st->timer_handle_type,
                        "TimerHandle") < 0
            || add_type(module, &fl_loop_spec, NULL, &st->loop_type,
                        "LoopCore") < 0) {
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
    Py_VISIT(st->helper_handle_repr);
    Py_VISIT(st->helper_callback_error);
    Py_VISIT(st->helper_slow_callback);
    Py_VISIT(st->helper_extract_stack);
    Py_VISIT(st->helper_check_callback);
    return 0;
}

static int
module_clear(PyObject *module)
{
    fl_state *st = get_state(module);
    Py_CLEAR(st->loop_type);
    Py_CLEAR(st->handle_type);
    Py_CLEAR(st->timer_handle_type);
    Py_CLEAR(st->helper_handle_repr);
    Py_CLEAR(st->helper_callback_error);
    Py_CLEAR(st->helper_slow_callback);
    Py_CLEAR(st->helper_extract_stack);
    Py_CLEAR(st->helper_check_callback);
    Py_CLEAR(st->str_call_exception_handler);
    Py_CLEAR(st->str_fileno);
    Py_CLEAR(st->str_dispatch_signal);
    return 0;
}

static void
module_free(void *module)
{
    module_clear(module);
}

static PyModuleDef_Slot module_slots[] = {
    {Py_mod_exec, module_exec},
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
