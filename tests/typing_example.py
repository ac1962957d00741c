"""Typed code using fastloop's public API, as a user would write it.

tests/test_stubs.py checks it with `mypy --strict` (against fastloop's stubs)
and runs it: it must be both well-typed and correct.
"""
import asyncio
import sys

import fastloop


async def add(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


async def echo_once(payload: bytes) -> bytes:
    """A TCP echo over the loop's streams: the network API's types."""
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(await reader.read(100))
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    async with server:
        port: int = server.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(payload)
        data = await reader.read(100)
        writer.close()
        await writer.wait_closed()
    return data


async def main() -> str:
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[str] = loop.create_future()
    loop.call_soon(fut.set_result, "done")
    timer: asyncio.TimerHandle = loop.call_later(60, print, "never printed")
    timer.cancel()
    task: asyncio.Task[int] = loop.create_task(add(1, 2), name="add")
    echoed = await echo_once(b"ping")
    return f"{await fut} {await task} {echoed.decode()} {type(loop).__name__}"


def with_run() -> str:
    return fastloop.run(main())


def with_new_event_loop() -> int:
    loop: fastloop.Loop = fastloop.new_event_loop()
    try:
        return loop.run_until_complete(add(2, 3))
    finally:
        loop.close()


def with_loop_class() -> float:
    loop = fastloop.Loop()
    try:
        return loop.time()
    finally:
        loop.close()


def with_runner() -> int:
    with asyncio.Runner(loop_factory=fastloop.Loop) as runner:
        return runner.run(add(3, 4))


def with_loop_factory() -> int:
    if sys.version_info >= (3, 12):
        return asyncio.run(add(4, 5), loop_factory=fastloop.new_event_loop)
    with asyncio.Runner(loop_factory=fastloop.new_event_loop) as runner:
        return runner.run(add(4, 5))


if __name__ == "__main__":
    print(with_run(), with_new_event_loop(), with_loop_class() > 0,
          with_runner(), with_loop_factory(), fastloop.__version__)
