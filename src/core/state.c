/* Module state: the module definition's state half, and its accessors. */
#include <stddef.h>
#include "core/state.h"


fl_state *
fl_state_from_type(PyTypeObject *type)
{
    PyObject *module = PyType_GetModuleByDef(type, &fl_module_def);
    if (module == NULL) {
        return NULL;
    }
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
PyObject *
fl_state_set_helpers(PyObject *module, PyObject *args, PyObject *kwds)
{
    if (PyTuple_GET_SIZE(args) != 0 || kwds == NULL
            || PyDict_GET_SIZE(kwds) != (Py_ssize_t)N_HELPER_SLOTS) {
        PyErr_Format(PyExc_TypeError, "_set_helpers() takes exactly %d keywords",
                     (int)N_HELPER_SLOTS);
        return NULL;
    }
    fl_state *st = fl_state_of_module(module);
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

void
fl_members_at(PyMemberDef *members, Py_ssize_t at)
{
    for (PyMemberDef *m = members; m->name != NULL; m++) {
        m->offset += at;
    }
}

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

int
fl_type_add_members(PyTypeObject *type, PyMemberDef *members)
{
    for (PyMemberDef *m = members; m->name != NULL; m++) {
        PyObject *descr = PyDescr_NewMember(type, m);
        if (descr == NULL
                || PyDict_SetItemString(type->tp_dict, m->name, descr) < 0) {
            Py_XDECREF(descr);
            return -1;
        }
        Py_DECREF(descr);
    }
    PyType_Modified(type);
    return 0;
}

static int
module_traverse(PyObject *module, visitproc visit, void *arg)
{
    fl_state *st = fl_state_of_module(module);
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
    fl_state *st = fl_state_of_module(module);
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

struct PyModuleDef fl_module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "fastloop._core",
    .m_doc = "The C core of fastloop: an asyncio event loop on libev.",
    .m_size = sizeof(fl_state),
    .m_traverse = module_traverse,
    .m_clear = module_clear,
    .m_free = module_free,
};
