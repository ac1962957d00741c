/* FlLoop: the C base of fastloop.Loop. */
#ifndef FL_LOOP_H
#define FL_LOOP_H

#include <ev.h>
#include "module.h"
#include "ready.h"
#include "timers.h"
#include "io.h"

typedef struct FlLoop {
    PyObject_HEAD
    fl_state *state;
    struct ev_loop *ev;

    fl_ready_queue ready;
    fl_timer_heap timers;
    fl_fd_table fds;

    ev_async wakeup;            /* call_soon_threadsafe; keeps ev_run blocking */
    ev_timer poll_timeout;      /* wakes the poll for the earliest timer */
    PyThreadState *released_tstate;
    char poll_may_block;        /* release the GIL only when the poll can sleep */
    double last_poll;           /* when a non-blocking poll last ran */
    unsigned long io_events;    /* watcher callbacks run, ever: did a poll find any? */
    char poll_found_nothing;    /* the last non-blocking poll ran no watcher */

    char closed;
    char stopping;
    char running;
    char debug;
    unsigned long thread_ident; /* valid while running */
    double slow_callback_duration;
    double clock_resolution;
    PyObject *current_handle;   /* debug mode: the handle being run */
    PyObject *entered_task;     /* left current by the last task step */
    PyObject *task_factory;     /* _task_factory; NULL or None for fastloop.Task */

    PyObject *weakreflist;
    struct FlLoop *next_open;   /* fl_state.open_loops */
    struct FlLoop *prev_open;
} FlLoop;

extern PyType_Spec fl_loop_spec;

double fl_loop_time(void);
/* RuntimeError('Event loop is closed') when closed; 0 otherwise. */
int fl_loop_check_closed(FlLoop *loop);
/* Debug mode's "Non-thread-safe operation ..." check. */
int fl_loop_check_thread(FlLoop *loop);
/* call_soon(args[0], *args[1:nargs]) in `context` (NULL or None: a copy of
   the current one): the new Handle, queued; NULL with an error set. */
PyObject *fl_loop_schedule_soon(FlLoop *loop, PyObject *const *args,
                                Py_ssize_t nargs, PyObject *context);
/* A timer handle was cancelled while in the heap. */
void fl_loop_timer_cancelled(FlLoop *loop, PyObject *timer);
/* Re-creates kernel state (epoll, eventfd) in a forked child. */
void fl_loops_after_fork(fl_state *state);
/* Makes libev report failed system calls instead of aborting. */
void fl_loop_install_syserr_cb(void);

#endif /* FL_LOOP_H */
