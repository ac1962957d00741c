/* ChildWatcher: notices that one child process exited, from a pidfd that
   the loop watches, and reaps exactly that child. */
#ifndef FL_PROCESS_H
#define FL_PROCESS_H

#include "compat.h"

/* Creates fastloop._core.ChildWatcher and adds it to the module. */
int fl_process_module_init(PyObject *module);

#endif /* FL_PROCESS_H */
