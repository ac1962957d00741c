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

    /* Wakeups from other threads: our own eventfd (a pipe elsewhere), not
       an ev_async, so that libev never makes a descriptor of its own after
       the loop exists (it retries forever when it cannot: issue #10, C7).
       The watcher also keeps ev_run blocking. The GIL guards the flags:
       `sleeping` is set before the GIL is released for a poll that may
       block and cleared once it is taken back, and a wakeup writes only
       then, once until the loop drains it (`wake_pending`). */
    ev_io wakeup;
    int wakeup_rfd;             /* -1 when missing: a forked child could
                                   not remake it; the next run tries again */
    int wakeup_wfd;             /* the same eventfd, or a pipe's write end */
    char sleeping;
    char wake_pending;
    ev_timer poll_timeout;      /* wakes the poll for the earliest timer */
    PyThreadState *released_tstate;
    char poll_may_block;        /* release the GIL only when the poll can sleep */
    char in_run;                /* inside _run(): close() must refuse */
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
/* Wakes the loop from its poll if it sleeps there (any thread, GIL held). */
void fl_loop_wakeup(FlLoop *loop);
/* Re-creates kernel state (epoll, eventfd) in a forked child. */
void fl_loops_after_fork(fl_state *state);
/* Makes libev report failed system calls instead of aborting. */
void fl_loop_install_syserr_cb(void);

#endif /* FL_LOOP_H */
