/* Listener: accepts a server's connections in C (see server.c); asyncio's
   Server object and create_server() stay Python (fastloop._network). */
#ifndef FL_SERVER_H
#define FL_SERVER_H

#include "core/state.h"

/* Creates fastloop._core.Listener and adds it to the module. */
int fl_server_module_init(PyObject *module);

#endif /* FL_SERVER_H */
