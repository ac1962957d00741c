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

/* A protocol that takes a stream's received bytes in C instead of through
   get_buffer()/buffer_updated() (TLS, tls.c). Registered once at module
   init, so the stream never names what sits above it. */
typedef struct {
    /* Does this protocol take the C path? Asked when the protocol is set;
       -1 with an error. */
    int (*accepts)(PyObject *protocol);
    /* get_buffer(): where to receive, *len bytes; valid until
       buffer_updated() if no Python code runs in between. NULL with the
       error the protocol raised. */
    char *(*get_buffer)(PyObject *protocol, Py_ssize_t *len);
    /* buffer_updated(n): 0, or -1 with the error the protocol raised. */
    int (*buffer_updated)(PyObject *protocol, Py_ssize_t n);
} fl_stream_direct_protocol;

void fl_stream_register_direct(const fl_stream_direct_protocol *impl);

/* Is obj a StreamTransport itself (not a subclass, which may override
   write())? */
int fl_stream_check_exact(PyObject *obj);

/* transport.write(data) on such a transport, without the method call. */
PyObject *fl_stream_write(PyObject *self, PyObject *data);

#endif /* FL_STREAM_H */
