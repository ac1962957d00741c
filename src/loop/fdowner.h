/* Which transport owns a file descriptor: asyncio's loop._transports and
   _ensure_fd_no_transport().

   The map is the loop's `_transports` attribute, a dict fd -> transport
   (fastloop._network makes it). Stream and datagram transports enter their
   fd when made and leave it when their socket is closed; add_reader & co.
   and the sock_* methods consult it before they watch an fd, so a user
   cannot steal a transport's descriptor. Only those cold calls pay for it:
   one attribute lookup, and a dict lookup when any transport is open.

   An entry whose transport no longer holds the fd (its `_sock_fd` changed
   or its `_sock` is None: `transport._pipe = None` lets go of a pipe
   without closing the transport) is stale: the check drops it instead of
   refusing the fd. Both calls also drop an add_reader/add_writer
   registration of fd left by a closed object (fl_io_drop_stale), since
   someone else is about to watch that number.

   Both run Python code (attribute lookups, is_closing(), fileno()): a
   caller that checked the loop or the fd before must check again after
   (docs/NOTES.md, "Checks and Python code"). */
#ifndef FL_FDOWNER_H
#define FL_FDOWNER_H

#include "compat.h"

struct FlLoop;

/* Records that `transport` owns fd. -1 with an exception on failure. */
int fl_fdowner_add(struct FlLoop *loop, int fd, PyObject *transport);
/* Forgets fd if `transport` still owns it. Never fails; keeps any pending
   exception. */
void fl_fdowner_discard(struct FlLoop *loop, int fd, PyObject *transport);
/* asyncio's _ensure_fd_no_transport(): RuntimeError "File descriptor
   {fileobj!r} is used by transport {transport!r}" and -1 when an open
   transport still holding fd owns it (fileobj NULL: the fd number); 0
   otherwise. */
int fl_fdowner_check(struct FlLoop *loop, int fd, PyObject *fileobj);

#endif /* FL_FDOWNER_H */
