#include "core/ready.h"

#define FL_READY_MIN_CAPACITY 64

int
fl_ready_grow(fl_ready_queue *q)
{
    size_t old_cap = q->items ? q->mask + 1 : 0;
    size_t new_cap = old_cap ? old_cap * 2 : FL_READY_MIN_CAPACITY;
    fl_ready_item *items = PyMem_Malloc(new_cap * sizeof(fl_ready_item));
    if (items == NULL) {
        PyErr_NoMemory();
        return -1;
    }
    /* Unwrap the ring so the oldest entry lands at index 0. */
    for (size_t i = 0; i < q->count; i++) {
        items[i] = q->items[(q->head + i) & q->mask];
    }
    PyMem_Free(q->items);
    q->items = items;
    q->head = 0;
    q->mask = new_cap - 1;
    return 0;
}

void
fl_ready_clear(fl_ready_queue *q)
{
    /* Pop before decref: a finalizer may run and touch the queue. */
    while (q->count) {
        fl_ready_item item = fl_ready_pop(q);
        fl_ready_item_release(&item);
    }
}

void
fl_ready_free(fl_ready_queue *q)
{
    fl_ready_clear(q);
    PyMem_Free(q->items);
    q->items = NULL;
    q->head = q->mask = 0;
}

int
fl_ready_traverse(fl_ready_queue *q, visitproc visit, void *arg)
{
    for (size_t i = 0; i < q->count; i++) {
        fl_ready_item *item = &q->items[(q->head + i) & q->mask];
        Py_VISIT(item->arg);
        Py_VISIT(item->callback);
        Py_VISIT(item->context);
    }
    return 0;
}
