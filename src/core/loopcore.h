/* FlLoop's shape and the inline checks every floor makes on a loop.

   The engine's face, as small as Redis's ae.h: what a loop holds (its ready
   queue, timer heap and fd table are shapes here too, their code lives
   with the engine and the callbacks), and the checks callers make before
   they touch it. Nothing here calls above the ground floor. */
#ifndef FL_LOOPCORE_H
#define FL_LOOPCORE_H

#include <stdint.h>
#include <ev.h>
#include "core/state.h"
#include "core/ready.h"

/* The timer heap (timers.c): TimerHandles ordered by (when, seq). Entries
   keep the deadline inline so that sifting never touches the handles. */
typedef struct {
    double when;
    uint64_t seq;               /* FIFO order among equal deadlines */
    PyObject *timer;            /* a strong reference to the TimerHandle */
} fl_timer_entry;

typedef struct {
    fl_timer_entry *items;
    Py_ssize_t count;
    Py_ssize_t capacity;
    Py_ssize_t cancelled;       /* cancelled handles still in the heap */
    uint64_t next_seq;
} fl_timer_heap;

/* add_reader / add_writer (io.c): one ev_io watcher per file descriptor. */
typedef struct {
    ev_io watcher;              /* first: the libev callback casts back */
    struct FlLoop *loop;
    PyObject *reader;           /* FlHandle or NULL */
    PyObject *writer;           /* FlHandle or NULL */
    PyObject *fileobj;          /* what the first add_*() got (asyncio's
                                   key.fileobj): remove_*() of a closed
                                   socket finds its registration by identity */
} fl_fd_watch;

typedef struct {
    fl_fd_watch **by_fd;        /* indexed by fd; NULL where nothing watches */
    int size;
    Py_ssize_t active;          /* how many entries are non-NULL */
} fl_fd_table;

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

    /* Transports that started a watcher since the last poll: one prepare
       watcher re-checks their fds just before libev polls them (the code is
       the transports', transport.c). Borrowed pointers: a transport takes
       itself out (NULL) when it stops watching. */
    ev_prepare fd_guard;
    void **fd_guard_items;
    int fd_guard_count, fd_guard_cap;

    PyObject *weakreflist;
    struct FlLoop *next_open;   /* fl_state.open_loops */
    struct FlLoop *prev_open;
} FlLoop;

/* The one constructor prologue of the types made on a loop (Handle,
   transports, Listener, ChildWatcher): `loop`, the argument, must be a
   loop of `type`'s module. The loop, or NULL with TypeError. */
static inline FlLoop *
fl_loop_from_arg(PyTypeObject *type, PyObject *loop)
{
    fl_state *st = fl_state_from_type(type);
    if (st == NULL) {
        return NULL;
    }
    if (!PyObject_TypeCheck(loop, st->loop_type)) {
        PyErr_SetString(PyExc_TypeError, "loop must be a fastloop loop");
        return NULL;
    }
    return (FlLoop *)loop;
}

/* RuntimeError('Event loop is closed') when closed; 0 otherwise. */
static inline int
fl_loop_check_closed(FlLoop *loop)
{
    if (loop->closed) {
        PyErr_SetString(PyExc_RuntimeError, "Event loop is closed");
        return -1;
    }
    return 0;
}

/* An object made by Python-running code (allocation, the debug stack
   capture) is queued only if the loop is still open: its caller checked
   that before, and the check no longer holds (docs/NOTES.md, "Checks and
   Python code"). Drops `obj` and fails when the loop closed meanwhile. */
static inline int
fl_loop_recheck_closed(FlLoop *loop, PyObject *obj)
{
    if (loop->closed) {
        Py_DECREF(obj);
        return fl_loop_check_closed(loop);
    }
    return 0;
}

/* Debug mode's "Non-thread-safe operation ..." check. */
static inline int
fl_loop_check_thread(FlLoop *loop)
{
    if (loop->running && PyThread_get_thread_ident() != loop->thread_ident) {
        PyErr_SetString(PyExc_RuntimeError,
                        "Non-thread-safe operation invoked on an event loop "
                        "other than the current one");
        return -1;
    }
    return 0;
}

#endif /* FL_LOOPCORE_H */
