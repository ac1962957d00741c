/* loop.sock_recv() and friends: awaitables that try the syscall at once and
   wait on an ev_io watcher only when it would block. */
#ifndef FL_SOCK_H
#define FL_SOCK_H

#include "core/state.h"

/* The LoopCore methods of this file, for module.c's loop_method_tables. */
extern PyMethodDef fl_sock_loop_methods[];

/* Creates the awaitable's type and looks up the socket types; called once
   from module_exec. */
int fl_sock_module_init(PyObject *module);

#endif /* FL_SOCK_H */
