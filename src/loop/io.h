/* add_reader / add_writer: one ev_io watcher per file descriptor. */
#ifndef FL_IO_H
#define FL_IO_H

#include <ev.h>
#include "core/loopcore.h"

struct FlLoop;



PyObject *fl_io_add_reader(struct FlLoop *, PyObject *const *, Py_ssize_t, PyObject *);
PyObject *fl_io_add_writer(struct FlLoop *, PyObject *const *, Py_ssize_t, PyObject *);
PyObject *fl_io_remove_reader(struct FlLoop *, PyObject *);
PyObject *fl_io_remove_writer(struct FlLoop *, PyObject *);
/* Someone is about to watch fd (a transport, a sock_* operation, an
   add_*() of another object): drop an add_reader/add_writer registration
   of fd made with an object (not a number) that no longer has fd, because
   it was closed and the number reused; its callbacks must never fire for
   the new file. `fileobj` (NULL: none) is the new user, never stale.
   Runs Python code (the old object's fileno()); -1 only for errors that
   must propagate (not Exception subclasses). */
int fl_io_drop_stale(struct FlLoop *loop, int fd, PyObject *fileobj);
/* Stops and forgets every watcher (loop close). */
void fl_io_clear(struct FlLoop *loop);
int fl_io_traverse(fl_fd_table *table, visitproc visit, void *arg);

#endif /* FL_IO_H */
