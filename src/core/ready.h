/* The ready queue: a growable ring of (function, object) entries.

   Every callback the loop runs goes through here. A user's call_soon() is an
   entry whose object is a Handle; fastloop's own wakeups are entries whose
   function is C, so they allocate nothing. The GIL guards the ring: the loop
   thread only drops the GIL while it sleeps in the poll, and
   call_soon_threadsafe() holds it while it appends. */
#ifndef FL_READY_H
#define FL_READY_H

#include "compat.h"

struct FlLoop;

typedef struct fl_ready_item fl_ready_item;

/* Runs one entry; owns nothing (the queue drops the references afterwards).
   Returns -1 with an exception set only for errors that must stop the loop
   (SystemExit, KeyboardInterrupt); everything else it reports itself. */
typedef int (*fl_ready_fn)(struct FlLoop *loop, fl_ready_item *item);

struct fl_ready_item {
    fl_ready_fn fn;
    PyObject *arg;              /* strong references; callback and context */
    PyObject *callback;         /* are NULL except for a future's done */
    PyObject *context;          /* callbacks, which need no Handle */
};

typedef struct {
    fl_ready_item *items;
    size_t head;                /* index of the oldest entry */
    size_t count;
    size_t mask;                /* capacity - 1; capacity is a power of two */
} fl_ready_queue;

int fl_ready_grow(fl_ready_queue *q);
void fl_ready_clear(fl_ready_queue *q);
void fl_ready_free(fl_ready_queue *q);
int fl_ready_traverse(fl_ready_queue *q, visitproc visit, void *arg);

/* Appends an entry and takes a new reference to `arg`. */
static inline int
fl_ready_push(fl_ready_queue *q, fl_ready_fn fn, PyObject *arg)
{
    if (q->items == NULL || q->count > q->mask) {
        if (fl_ready_grow(q) < 0) {
            return -1;
        }
    }
    fl_ready_item *item = &q->items[(q->head + q->count) & q->mask];
    item->fn = fn;
    item->arg = Py_NewRef(arg);
    item->callback = NULL;
    item->context = NULL;
    q->count++;
    return 0;
}

/* An entry that calls callback(arg) in context; takes new references. */
static inline int
fl_ready_push_callback(fl_ready_queue *q, fl_ready_fn fn, PyObject *arg,
                       PyObject *callback, PyObject *context)
{
    if (fl_ready_push(q, fn, arg) < 0) {
        return -1;
    }
    fl_ready_item *item = &q->items[(q->head + q->count - 1) & q->mask];
    item->callback = Py_NewRef(callback);
    item->context = Py_XNewRef(context);
    return 0;
}

static inline void
fl_ready_item_release(fl_ready_item *item)
{
    Py_DECREF(item->arg);
    Py_XDECREF(item->callback);
    Py_XDECREF(item->context);
}

/* Removes the oldest entry; the caller owns item->arg. */
static inline fl_ready_item
fl_ready_pop(fl_ready_queue *q)
{
    fl_ready_item item = q->items[q->head];
    q->head = (q->head + 1) & q->mask;
    q->count--;
    return item;
}

#endif /* FL_READY_H */
