/* The timer heap: TimerHandles ordered by (when, seq), on the monotonic clock.
   Entries keep the deadline inline so that sifting never touches the
   handles themselves. */
#ifndef FL_TIMERS_H
#define FL_TIMERS_H

#include <stdint.h>
#include "core/loopcore.h"



int fl_timers_push(fl_timer_heap *heap, PyObject *timer);
/* Removes the earliest timer; the caller owns the reference. */
PyObject *fl_timers_pop(fl_timer_heap *heap);
/* Drops cancelled timers: all of them when they are most of the heap,
   otherwise just those at its head (as asyncio does). */
void fl_timers_prune(fl_timer_heap *heap);
void fl_timers_clear(fl_timer_heap *heap);
void fl_timers_free(fl_timer_heap *heap);
int fl_timers_traverse(fl_timer_heap *heap, visitproc visit, void *arg);

/* The earliest deadline; the heap must not be empty. */
static inline double
fl_timers_first_when(fl_timer_heap *heap)
{
    return heap->items[0].when;
}

#endif /* FL_TIMERS_H */
