#include "callbacks/timers.h"
#include "callbacks/handle.h"

/* Below this many timers a cancelled one is only dropped once it reaches
   the head; above it, a heap that is mostly cancelled is rebuilt. */
#define FL_TIMERS_MIN_FOR_COMPACTION 100

static inline int
entry_before(const fl_timer_entry *a, const fl_timer_entry *b)
{
    return a->when < b->when || (a->when == b->when && a->seq < b->seq);
}

static void
sift_up(fl_timer_entry *items, Py_ssize_t pos)
{
    fl_timer_entry item = items[pos];
    while (pos > 0) {
        Py_ssize_t parent = (pos - 1) >> 1;
        if (!entry_before(&item, &items[parent])) {
            break;
        }
        items[pos] = items[parent];
        pos = parent;
    }
    items[pos] = item;
}

static void
sift_down(fl_timer_entry *items, Py_ssize_t count, Py_ssize_t pos)
{
    fl_timer_entry item = items[pos];
    for (;;) {
        Py_ssize_t child = 2 * pos + 1;
        if (child >= count) {
            break;
        }
        if (child + 1 < count && entry_before(&items[child + 1], &items[child])) {
            child++;
        }
        if (!entry_before(&items[child], &item)) {
            break;
        }
        items[pos] = items[child];
        pos = child;
    }
    items[pos] = item;
}

int
fl_timers_push(fl_timer_heap *heap, PyObject *timer)
{
    if (heap->count == heap->capacity) {
        Py_ssize_t cap = heap->capacity ? heap->capacity * 2 : 64;
        fl_timer_entry *items = PyMem_Realloc(heap->items, cap * sizeof(*items));
        if (items == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        heap->items = items;
        heap->capacity = cap;
    }
    fl_timer_entry *e = &heap->items[heap->count];
    e->when = FL_TIMER(timer)->when;
    e->seq = heap->next_seq++;
    e->timer = Py_NewRef(timer);
    sift_up(heap->items, heap->count);
    heap->count++;
    FL_TIMER(timer)->scheduled = 1;
    return 0;
}

PyObject *
fl_timers_pop(fl_timer_heap *heap)
{
    PyObject *top = heap->items[0].timer;
    heap->count--;
    if (heap->count > 0) {
        heap->items[0] = heap->items[heap->count];
        sift_down(heap->items, heap->count, 0);
    }
    FL_TIMER(top)->scheduled = 0;
    if (FL_HANDLE(top)->cancelled) {
        heap->cancelled--;
    }
    return top;
}

static void
compact(fl_timer_heap *heap)
{
    /* Collect the dropped ones first and release them once the heap is
       consistent again: a release can run arbitrary code. */
    PyObject **dropped = PyMem_Malloc(heap->cancelled * sizeof(*dropped));
    if (dropped == NULL) {
        return;     /* not fatal: they are dropped at the head later */
    }
    Py_ssize_t kept = 0, ndropped = 0;
    for (Py_ssize_t i = 0; i < heap->count; i++) {
        PyObject *t = heap->items[i].timer;
        if (FL_HANDLE(t)->cancelled && ndropped < heap->cancelled) {
            FL_TIMER(t)->scheduled = 0;
            dropped[ndropped++] = t;
        }
        else {
            heap->items[kept++] = heap->items[i];
        }
    }
    heap->count = kept;
    heap->cancelled -= ndropped;
    for (Py_ssize_t i = (kept >> 1) - 1; i >= 0; i--) {
        sift_down(heap->items, kept, i);
    }
    for (Py_ssize_t i = 0; i < ndropped; i++) {
        Py_DECREF(dropped[i]);
    }
    PyMem_Free(dropped);
}

void
fl_timers_prune(fl_timer_heap *heap)
{
    if (heap->cancelled == 0) {
        return;
    }
    if (heap->count > FL_TIMERS_MIN_FOR_COMPACTION
            && heap->cancelled * 2 > heap->count) {
        compact(heap);
        return;
    }
    while (heap->count && FL_HANDLE(heap->items[0].timer)->cancelled) {
        Py_DECREF(fl_timers_pop(heap));
    }
}

void
fl_timers_clear(fl_timer_heap *heap)
{
    while (heap->count) {
        Py_DECREF(fl_timers_pop(heap));
    }
    heap->cancelled = 0;
}

void
fl_timers_free(fl_timer_heap *heap)
{
    fl_timers_clear(heap);
    PyMem_Free(heap->items);
    heap->items = NULL;
    heap->capacity = 0;
}

int
fl_timers_traverse(fl_timer_heap *heap, visitproc visit, void *arg)
{
    for (Py_ssize_t i = 0; i < heap->count; i++) {
        Py_VISIT(heap->items[i].timer);
    }
    return 0;
}
