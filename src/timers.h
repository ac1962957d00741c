/* The timer heap: TimerHandles ordered by (when, seq), on the monotonic clock. */
#ifndef FL_TIMERS_H
#define FL_TIMERS_H

#include "handle.h"

typedef struct {
    FlTimerHandle **items;      /* strong references */
    Py_ssize_t count;
    Py_ssize_t capacity;
    Py_ssize_t cancelled;       /* cancelled handles still in the heap */
} fl_timer_heap;

int fl_timers_push(fl_timer_heap *heap, FlTimerHandle *timer);
/* Removes the earliest timer; the caller owns the reference. */
FlTimerHandle *fl_timers_pop(fl_timer_heap *heap);
/* Drops cancelled timers: all of them when they are most of the heap,
   otherwise just those at its head (as asyncio does). */
void fl_timers_prune(fl_timer_heap *heap);
void fl_timers_clear(fl_timer_heap *heap);
void fl_timers_free(fl_timer_heap *heap);
int fl_timers_traverse(fl_timer_heap *heap, visitproc visit, void *arg);

static inline FlTimerHandle *
fl_timers_peek(fl_timer_heap *heap)
{
    return heap->count ? heap->items[0] : NULL;
}

#endif /* FL_TIMERS_H */
