/* File descriptors, beside the engine as Redis's anet.c beside ae.c: a
   number from an int or a file object, the one "is it open?" check, and
   what epoll would say about watching it. Who owns an fd (fdowner.c) and
   who watches it (io.c) are the engine's. */
#ifndef FL_FD_H
#define FL_FD_H

#include <fcntl.h>
#include "compat.h"

/* The one open-fd check: is fd an open descriptor? errno says why not. */
static inline int
fl_fd_is_open(int fd)
{
    return fcntl(fd, F_GETFD) >= 0;
}

/* OSError (EBADF) and -1 when fd is not open; 0 otherwise. */
int fl_fd_check_open(int fd);

/* The fd number of an int or an object with fileno(), asyncio's errors. */
int fl_fd_from_fileobj(PyObject *fileobj);

/* A file descriptor read as a long (PyLong_AsLong's -1 and error
   included): the int, or -1 with ValueError("Invalid file descriptor"). */
int fl_fd_from_long(long fd);

/* What epoll_ctl() says about watching fd: the errno behind libev's
   EV_ERROR, which carries none (EBADF when fd is closed; ENOSPC at
   fs.epoll.max_user_watches; EIO when it now works). */
int fl_fd_watch_errno(int fd);

#endif /* FL_FD_H */
