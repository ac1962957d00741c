/* Stream transports (TCP and Unix sockets) and the listeners that accept
   them. The transport type subclasses asyncio.transports._FlowControlMixin,
   so isinstance() checks in user code and in asyncio itself hold; its own
   fields live after the base's storage, as Future's do. */
#ifndef FL_STREAM_H
#define FL_STREAM_H

#include "module.h"

/* Creates the StreamTransport and Listener types and adds them to the
   module; called once from module_exec. */
int fl_stream_module_init(PyObject *module, fl_state *st);

#endif /* FL_STREAM_H */
