"""create_future, create_task, task factories."""
import asyncio
import contextvars
import sys

import pytest

from fl_support import PY311, run

var = contextvars.ContextVar("tf", default="default")


async def _value(x):
    await asyncio.sleep(0)
    return x


def test_create_future(loop):
    fut = loop.create_future()
    assert asyncio.isfuture(fut)
    assert isinstance(fut, asyncio.Future)
    assert fut.get_loop() is loop
    assert not fut.done()
    loop.call_soon(fut.set_result, "r")
    assert loop.run_until_complete(fut) == "r"


def test_create_future_closed_loop(loop):
    # asyncio allows creating a future on a closed loop.
    loop.close()
    fut = loop.create_future()
    assert not fut.done()


def test_create_task(loop):
    task = loop.create_task(_value(5))
    assert isinstance(task, asyncio.Task)
    assert task.get_loop() is loop
    assert loop.run_until_complete(task) == 5


def test_create_task_name(loop):
    task = loop.create_task(_value(1), name="my-task")
    assert task.get_name() == "my-task"
    loop.run_until_complete(task)


def test_create_task_default_name(loop):
    task = loop.create_task(_value(1))
    assert task.get_name().startswith("Task-")
    loop.run_until_complete(task)


@pytest.mark.skipif(not PY311, reason="context= is 3.11+")
def test_create_task_context(loop):
    ctx = contextvars.copy_context()
    ctx.run(var.set, "task-ctx")

    async def main():
        return var.get()

    task = loop.create_task(main(), context=ctx)
    assert loop.run_until_complete(task) == "task-ctx"


@pytest.mark.skipif(PY311, reason="3.10 has no context=")
def test_create_task_context_310(loop):
    coro = _value(1)
    try:
        with pytest.raises(TypeError):
            loop.create_task(coro, context=contextvars.copy_context())
    finally:
        coro.close()


@pytest.mark.parametrize("bad", [1, None, "coro", lambda: None])
def test_create_task_not_a_coroutine(loop, bad):
    with pytest.raises(TypeError, match=r"^a coroutine was expected, got "):
        loop.create_task(bad)


def test_create_task_closed_loop(loop):
    loop.close()
    coro = _value(1)
    try:
        with pytest.raises(RuntimeError, match="^Event loop is closed$"):
            loop.create_task(coro)
    finally:
        coro.close()


def test_current_and_all_tasks(loop):
    async def main():
        cur = asyncio.current_task()
        return cur, asyncio.all_tasks()

    task = loop.create_task(main())
    cur, all_ = loop.run_until_complete(task)
    assert cur is task
    assert task in all_
    assert asyncio.current_task(loop) is None
    assert asyncio.all_tasks(loop) == set()


def test_task_factory_get_set(loop):
    assert loop.get_task_factory() is None

    def factory(lp, coro, **kw):
        return asyncio.Task(coro, loop=lp, **kw)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    loop.set_task_factory(None)
    assert loop.get_task_factory() is None


@pytest.mark.parametrize("bad", [1, "factory", object()])
def test_task_factory_non_callable(loop, bad):
    with pytest.raises(TypeError, match="^task factory must be a callable "
                                        "or None$"):
        loop.set_task_factory(bad)
    assert loop.get_task_factory() is None


def test_task_factory_called_without_context(loop):
    calls = []

    def factory(*args, **kwargs):
        calls.append((args, kwargs))
        return asyncio.Task(args[1], loop=args[0])

    loop.set_task_factory(factory)
    coro = _value(3)
    task = loop.create_task(coro)
    assert loop.run_until_complete(task) == 3
    # factory(loop, coro): no keyword arguments when no context is given
    assert calls == [((loop, coro), {})]


@pytest.mark.skipif(not PY311, reason="context= is 3.11+")
def test_task_factory_called_with_context(loop):
    calls = []

    def factory(lp, coro, **kwargs):
        calls.append((lp, coro, kwargs))
        return asyncio.Task(coro, loop=lp, **kwargs)

    loop.set_task_factory(factory)
    ctx = contextvars.copy_context()
    ctx.run(var.set, "via-factory")

    async def main():
        return var.get()

    coro = main()
    task = loop.create_task(coro, context=ctx)
    assert loop.run_until_complete(task) == "via-factory"
    assert calls == [(loop, coro, {"context": ctx})]


def test_task_factory_name_is_applied(loop):
    # asyncio sets the name on the factory's result afterwards.
    def factory(lp, coro, **kw):
        return asyncio.Task(coro, loop=lp, **kw)

    loop.set_task_factory(factory)
    task = loop.create_task(_value(1), name="named-by-loop")
    assert task.get_name() == "named-by-loop"
    loop.run_until_complete(task)


def test_task_factory_used_by_ensure_future_and_run_until_complete(loop):
    made = []

    def factory(lp, coro, **kw):
        t = asyncio.Task(coro, loop=lp, **kw)
        made.append(t)
        return t

    loop.set_task_factory(factory)
    assert loop.run_until_complete(_value(9)) == 9
    assert len(made) == 1

    async def main():
        return await asyncio.ensure_future(_value(2))

    assert loop.run_until_complete(main()) == 2
    assert len(made) == 3


def test_task_factory_exception_propagates(loop):
    def factory(lp, coro, **kw):
        raise LookupError("factory failed")

    loop.set_task_factory(factory)
    coro = _value(1)
    try:
        with pytest.raises(LookupError, match="factory failed"):
            loop.create_task(coro)
    finally:
        coro.close()


def test_task_factory_returning_custom_future(loop):
    class MyTask(asyncio.Task):
        pass

    loop.set_task_factory(lambda lp, coro, **kw: MyTask(coro, loop=lp, **kw))
    task = loop.create_task(_value(4))
    assert type(task) is MyTask
    assert loop.run_until_complete(task) == 4


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager tasks are 3.12+")
def test_eager_task_factory(loop):
    loop.set_task_factory(asyncio.eager_task_factory)
    order = []

    async def eager():
        order.append("started")
        return 1

    async def main():
        t = asyncio.create_task(eager())
        order.append("after create_task")
        return await t

    assert run(loop, main()) == 1
    assert order == ["started", "after create_task"]


def test_gather_and_wait_for(loop):
    async def main():
        a = await asyncio.gather(_value(1), _value(2))
        b = await asyncio.wait_for(_value(3), 1)
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.sleep(10), 0.01)
        return a, b

    assert run(loop, main()) == ([1, 2], 3)


def test_task_cancel_and_cancelled_error(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        t = loop.create_task(sleeper())
        await asyncio.sleep(0)
        t.cancel("why")
        with pytest.raises(asyncio.CancelledError):
            await t
        return t.cancelled()

    assert run(loop, main()) is True
