/* Stream transports: TCP and Unix sockets, pipes. The transport type
   subclasses asyncio.transports._FlowControlMixin, so isinstance() checks
   in user code and in asyncio itself hold; its own fields live after the
   base's storage, as Future's do. */
#ifndef FL_STREAM_H
#define FL_STREAM_H

#include "core/state.h"
#include "core/loopcore.h"

/* Creates the StreamTransport type and adds it to the module; called once
   from module_exec. */
int fl_stream_module_init(PyObject *module);

/* A transport for an accepted, non-blocking socket, made as the
   StreamTransport constructor makes one: the protocol's connection_made()
   runs soon, in `context`. NULL with an exception; the socket then stays
   the caller's. */
PyObject *fl_stream_new_socket(FlLoop *loop, PyObject *sock, PyObject *protocol,
                               PyObject *extra, PyObject *server,
                               PyObject *context);

#endif /* FL_STREAM_H */
