/* add_reader / add_writer: one ev_io watcher per file descriptor. */
#ifndef FL_IO_H
#define FL_IO_H

#include <ev.h>
#include "compat.h"

struct FlLoop;

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

PyObject *fl_io_add_reader(struct FlLoop *, PyObject *const *, Py_ssize_t, PyObject *);
PyObject *fl_io_add_writer(struct FlLoop *, PyObject *const *, Py_ssize_t, PyObject *);
PyObject *fl_io_remove_reader(struct FlLoop *, PyObject *);
PyObject *fl_io_remove_writer(struct FlLoop *, PyObject *);
/* The fd number of an int or an object with fileno(), asyncio's errors. */
int fl_io_fileobj_to_fd(PyObject *fileobj);

/* A file descriptor read as a long (PyLong_AsLong's -1 and error
   included): the int, or -1 with ValueError("Invalid file descriptor"). */
int fl_io_fd_from_long(long fd);
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
