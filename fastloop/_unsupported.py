"""Loop methods fastloop does not implement yet.

Each raises NotImplementedError naming the method, instead of asyncio's bare
abstract one, so a user sees at once what is missing. The README lists them;
they land with the network and subprocess issues.
"""

_ASYNC_METHODS = (
    "sendfile",
)


def _not_implemented(name):
    async def method(self, *args, **kwargs):
        raise NotImplementedError(
            f"fastloop does not implement loop.{name}() yet; "
            f"see 'Not implemented yet' in fastloop's README")
    method.__name__ = method.__qualname__ = name
    return method


class NetworkStubs:
    """Mixin: the not-yet-implemented network, pipe and subprocess methods."""


for _name in _ASYNC_METHODS:
    setattr(NetworkStubs, _name, _not_implemented(_name))
del _name
