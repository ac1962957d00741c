/* FlLoop: the C base of fastloop.Loop. */
#ifndef FL_LOOP_H
#define FL_LOOP_H

#include "core/loopcore.h"
#include "callbacks/timers.h"
#include "loop/io.h"



extern PyType_Spec fl_loop_spec;

double fl_loop_time(void);
/* Wakes the loop from its poll if it sleeps there (any thread, GIL held). */
void fl_loop_wakeup(FlLoop *loop);
/* Re-creates kernel state (epoll, eventfd) in a forked child. */
void fl_loops_after_fork(fl_state *state);
/* Makes libev report failed system calls instead of aborting. */
void fl_loop_install_syserr_cb(void);

#endif /* FL_LOOP_H */
