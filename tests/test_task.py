"""Task: methods, attributes and step semantics, on both implementations.

``task_cls`` is asyncio.Task (CPython's C Task) on asyncio's loop and
fastloop.Task on fastloop's; expected values are what CPython's own Task does
on the running interpreter.
"""
import asyncio
import contextvars
import gc
import io
import re
import sys
import types
import weakref

import pytest

from fl_support import PY311, PY312, PY313, run

var = contextvars.ContextVar("task_var", default="default")


async def _value(x, delay=0):
    await asyncio.sleep(delay)
    return x


async def _forever():
    await asyncio.sleep(3600)


# ---- construction ----

def test_create_task_type(loop, task_cls):
    task = loop.create_task(_value(1))
    assert type(task) is task_cls
    assert isinstance(task, asyncio.Task)
    assert isinstance(task, asyncio.Future)
    assert asyncio.isfuture(task)
    assert loop.run_until_complete(task) == 1


def test_task_constructor(loop, task_cls):
    coro = _value(2)
    task = task_cls(coro, loop=loop)
    assert task.get_loop() is loop
    assert task.get_coro() is coro
    assert task._coro is coro
    assert loop.run_until_complete(task) == 2


def test_task_constructor_not_coroutine(loop, task_cls):
    with pytest.raises(TypeError, match="a coroutine was expected, got 1"):
        task_cls(1, loop=loop)


def test_task_generic_alias(task_cls):
    alias = task_cls[int]
    assert isinstance(alias, types.GenericAlias)
    assert alias.__origin__ is task_cls


def test_task_weakref_hash(loop):
    task = loop.create_task(_value(1))
    ref = weakref.ref(task)
    assert {task: 1}[task] == 1
    loop.run_until_complete(task)
    del task
    gc.collect()
    assert ref() is None


def test_set_result_and_exception_refused(loop):
    task = loop.create_task(_value(1))
    with pytest.raises(RuntimeError, match="Task does not support set_result"):
        task.set_result(1)
    with pytest.raises(RuntimeError, match="Task does not support set_exception"):
        task.set_exception(ValueError())
    loop.run_until_complete(task)


# ---- names ----

def test_default_names(loop):
    t1 = loop.create_task(_value(1))
    t2 = loop.create_task(_value(1))
    m1 = re.fullmatch(r"Task-(\d+)", t1.get_name())
    m2 = re.fullmatch(r"Task-(\d+)", t2.get_name())
    assert m1 and m2
    assert int(m2.group(1)) == int(m1.group(1)) + 1
    loop.run_until_complete(asyncio.gather(t1, t2))


def test_set_name(loop):
    task = loop.create_task(_value(1), name="first")
    assert task.get_name() == "first"
    task.set_name("second")
    assert task.get_name() == "second"
    task.set_name(42)
    assert task.get_name() == "42"
    assert "name='42'" in repr(task)
    loop.run_until_complete(task)


def test_create_task_name_non_str(loop):
    task = loop.create_task(_value(1), name=7)
    assert task.get_name() == "7"
    loop.run_until_complete(task)


def test_repr(loop):
    async def coro_fn():
        await asyncio.sleep(0)
        return 5

    task = loop.create_task(coro_fn(), name="T")
    assert re.match(r"<Task pending name='T' coro=<test_repr\.<locals>\.coro_fn\(\) running at ", repr(task)), repr(task)
    loop.run_until_complete(task)
    assert repr(task).startswith("<Task finished name='T' coro=<")
    assert repr(task).endswith("result=5>")


# ---- coro / context ----

def test_get_coro_after_done(loop):
    coro = _value(1)
    task = loop.create_task(coro)
    loop.run_until_complete(task)
    # 3.12+ keeps the coroutine; earlier versions also keep it on the C Task
    assert task.get_coro() is coro


@pytest.mark.skipif(not PY312, reason="get_context() is 3.12+")
def test_get_context(loop, task_cls):
    ctx = contextvars.copy_context()
    task = task_cls(_value(1), loop=loop, context=ctx)
    assert task.get_context() is ctx
    t2 = loop.create_task(_value(1))
    assert isinstance(t2.get_context(), contextvars.Context)
    loop.run_until_complete(asyncio.gather(task, t2))


def test_task_runs_in_copy_of_current_context(loop):
    var.set("creator")

    async def main():
        seen = var.get()
        var.set("task")
        return seen

    try:
        task = loop.create_task(main())
        assert loop.run_until_complete(task) == "creator"
        assert var.get() == "creator"
    finally:
        var.set("default")


@pytest.mark.skipif(not PY311, reason="context= is 3.11+")
def test_task_context_argument(loop, task_cls):
    ctx = contextvars.Context()
    ctx.run(var.set, "given")

    async def main():
        v = var.get()
        var.set("changed")
        await asyncio.sleep(0)
        return v

    task = task_cls(main(), loop=loop, context=ctx)
    assert loop.run_until_complete(task) == "given"
    assert ctx[var] == "changed"


# ---- stack ----

def test_get_stack_pending(loop):
    async def deep():
        await asyncio.sleep(3600)

    task = loop.create_task(deep())
    loop.run_until_complete(asyncio.sleep(0))
    frames = task.get_stack()
    assert len(frames) == 1
    assert frames[0].f_code.co_name == "deep"
    assert task.get_stack(limit=0) == [] or len(task.get_stack(limit=0)) <= 1
    buf = io.StringIO()
    task.print_stack(file=buf)
    text = buf.getvalue()
    assert text.startswith(f"Stack for {task!r} (most recent call last):")
    assert "in deep" in text
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)


def test_get_stack_done_with_exception(loop):
    async def fail():
        await asyncio.sleep(0)
        raise ValueError("tb")

    task = loop.create_task(fail())
    with pytest.raises(ValueError):
        loop.run_until_complete(task)
    frames = task.get_stack()
    assert frames and frames[-1].f_code.co_name == "fail"
    buf = io.StringIO()
    task.print_stack(limit=1, file=buf)
    text = buf.getvalue()
    assert text.startswith(f"Traceback for {task!r} (most recent call last):")
    assert "ValueError: tb" in text


def test_get_stack_done_ok(loop):
    task = loop.create_task(_value(1))
    loop.run_until_complete(task)
    assert task.get_stack() == []
    buf = io.StringIO()
    task.print_stack(file=buf)
    assert buf.getvalue() == f"No stack for {task!r}\n"


# ---- semi-private attributes ----

def test_private_attributes(loop):
    fut = loop.create_future()

    async def main():
        return await fut

    coro = main()
    task = loop.create_task(coro)
    assert task._coro is coro
    assert task._log_destroy_pending is True
    assert task._must_cancel is False
    assert task._fut_waiter is None
    assert task._state == "PENDING"
    assert task._loop is loop
    assert task._callbacks is None
    loop.run_until_complete(asyncio.sleep(0))
    assert task._fut_waiter is fut
    fut.set_result(3)
    loop.run_until_complete(task)
    assert task._fut_waiter is None
    assert task._result == 3
    task._log_destroy_pending = False
    assert task._log_destroy_pending is False


def test_must_cancel_before_first_step(loop):
    task = loop.create_task(_value(1))
    assert task.cancel("early") is True
    assert task._must_cancel is True
    assert not task.cancelled()
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()
    assert task._must_cancel is False


# ---- cancellation ----

def test_cancel_message_propagates(loop):
    inner = []

    async def victim():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError as e:
            inner.append(e.args)
            raise

    async def main():
        t = loop.create_task(victim())
        await asyncio.sleep(0)
        assert t.cancel("the reason") is True
        assert not t.cancelled()
        try:
            await t
        except asyncio.CancelledError as e:
            return t, e

    t, outer = run(loop, main())
    assert inner == [("the reason",)]
    # 3.10 drops the message on the way out to the awaiting task
    assert outer.args == (("the reason",) if PY311 else ())
    assert t.cancelled()
    with pytest.raises(asyncio.CancelledError):
        t.result()


def test_cancel_keyword_msg(loop):
    async def main():
        t = loop.create_task(_forever())
        await asyncio.sleep(0)
        t.cancel(msg="kw")
        try:
            await t
        except asyncio.CancelledError as e:
            return e.args

    assert run(loop, main()) == (("kw",) if PY311 else ())


def test_cancel_done_task(loop):
    task = loop.create_task(_value(1))
    loop.run_until_complete(task)
    assert task.cancel() is False
    assert not task.cancelled()


def test_cancel_suppressed(loop):
    async def stubborn():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            return "ignored"

    async def main():
        t = loop.create_task(stubborn())
        await asyncio.sleep(0)
        t.cancel()
        return await t, t

    res, t = run(loop, main())
    assert res == "ignored"
    assert not t.cancelled()


def test_cancel_while_awaiting_future_cancels_it(loop):
    fut = loop.create_future()

    async def waiter():
        await fut

    async def main():
        t = loop.create_task(waiter())
        await asyncio.sleep(0)
        t.cancel("m")
        with pytest.raises(asyncio.CancelledError):
            await t

    run(loop, main())
    assert fut.cancelled()
    assert fut._cancel_message == "m"


def test_cancel_twice_before_step(loop):
    async def main():
        t = loop.create_task(_forever())
        assert t.cancel("a") is True
        assert t.cancel("b") is True
        with pytest.raises(asyncio.CancelledError) as ei:
            await t
        return ei.value.args

    args = run(loop, main())
    # the later message wins (3.10 drops it on the way to the awaiter)
    assert args == (("b",) if PY311 else ())


@pytest.mark.skipif(not PY311, reason="cancelling()/uncancel() are 3.11+")
def test_cancelling_uncancel(loop):
    async def main():
        t = loop.create_task(_forever())
        await asyncio.sleep(0)
        assert t.cancelling() == 0
        t.cancel()
        assert t.cancelling() == 1
        t.cancel()
        assert t.cancelling() == 2
        assert t.uncancel() == 1
        assert t.uncancel() == 0
        assert t.uncancel() == 0
        return t

    t = run(loop, main())
    # the cancel request made above is still delivered
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(t)


@pytest.mark.skipif(not PY311, reason="cancelling()/uncancel() are 3.11+")
def test_uncancel_clears_pending_cancel(loop):
    """3.13: uncancel() bringing the count to 0 clears _must_cancel; 3.11
    and 3.12 still deliver the cancel."""
    async def body():
        await asyncio.sleep(0)
        return "done"

    async def main():
        t = loop.create_task(body())
        t.cancel()
        assert t._must_cancel is True
        assert t.uncancel() == 0
        if PY313:
            assert t._must_cancel is False
        else:
            assert t._must_cancel is True
        try:
            return await t
        except asyncio.CancelledError:
            return "cancelled"

    assert run(loop, main()) == ("done" if PY313 else "cancelled")


@pytest.mark.skipif(not PY311, reason="cancelling() is 3.11+")
def test_cancelling_counts_inside_task(loop):
    seen = []

    async def victim():
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            seen.append(asyncio.current_task().cancelling())
            raise

    async def main():
        t = loop.create_task(victim())
        await asyncio.sleep(0)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t

    run(loop, main())
    assert seen == [1]


# ---- step semantics ----

def test_task_awaiting_itself(loop):
    async def coro():
        await task

    task = loop.create_task(coro())
    with pytest.raises(RuntimeError, match="Task cannot await on itself"):
        loop.run_until_complete(task)


class _YieldsValue:
    def __init__(self, value):
        self.value = value

    def __await__(self):
        yield self.value


def test_bad_yield(loop):
    async def coro():
        await _YieldsValue(42)

    task = loop.create_task(coro())
    with pytest.raises(RuntimeError, match=r"^Task got bad yield: 42$"):
        loop.run_until_complete(task)


def test_yield_of_generator(loop):
    def gen():
        yield

    async def coro():
        await _YieldsValue(gen())

    task = loop.create_task(coro())
    with pytest.raises(RuntimeError,
                       match=r"^yield was used instead of yield from for generator in task "):
        loop.run_until_complete(task)


def test_bare_yield_reschedules(loop):
    order = []

    async def a():
        order.append("a1")
        await _YieldsValue(None)
        order.append("a2")

    async def b():
        order.append("b1")
        await _YieldsValue(None)
        order.append("b2")

    async def main():
        await asyncio.gather(a(), b())

    loop.run_until_complete(main())
    assert order == ["a1", "b1", "a2", "b2"]


def test_future_of_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        fut = other.create_future()

        async def coro():
            await fut

        task = loop.create_task(coro())
        with pytest.raises(RuntimeError, match="attached to a different loop"):
            loop.run_until_complete(task)
    finally:
        other.close()


def test_blocking_flag_not_set(loop):
    """A future yielded without _asyncio_future_blocking set (a bare
    `yield fut`) is refused: asyncio checks the flag."""
    fut = loop.create_future()

    class Raw:
        def __await__(self):
            yield fut

    async def coro():
        await Raw()

    task = loop.create_task(coro())
    with pytest.raises(RuntimeError, match=r"^yield was used instead of "
                       r"yield from in task .* with <Future pending>$"):
        loop.run_until_complete(task)


def test_exception_in_coroutine(loop):
    async def fail():
        raise KeyError("k")

    task = loop.create_task(fail())
    with pytest.raises(KeyError):
        loop.run_until_complete(task)
    assert type(task.exception()) is KeyError


def test_stopiteration_in_coroutine(loop):
    async def fail():
        raise StopIteration

    task = loop.create_task(fail())
    with pytest.raises(RuntimeError, match="coroutine raised StopIteration"):
        loop.run_until_complete(task)


def test_keyboardinterrupt_propagates_and_sets_task(loop):
    async def kbi():
        raise KeyboardInterrupt

    task = loop.create_task(kbi())
    with pytest.raises(KeyboardInterrupt):
        loop.run_until_complete(task)
    assert task.done()
    assert type(task.exception()) is KeyboardInterrupt


def test_systemexit_propagates(loop):
    async def se():
        raise SystemExit(3)

    task = loop.create_task(se())
    with pytest.raises(SystemExit):
        loop.run_until_complete(task)
    assert task.done()


def test_task_result_is_awaited_task(loop):
    async def inner():
        await asyncio.sleep(0)
        return "in"

    async def outer():
        t = loop.create_task(inner())
        return await t

    assert run(loop, outer()) == "in"


def test_many_awaiters_on_one_future(loop):
    fut = loop.create_future()

    async def w(i):
        return (i, await fut)

    async def main():
        ts = [loop.create_task(w(i)) for i in range(10)]
        await asyncio.sleep(0)
        fut.set_result("x")
        return await asyncio.gather(*ts)

    assert run(loop, main()) == [(i, "x") for i in range(10)]


# ---- current_task / all_tasks ----

def test_current_task(loop):
    async def main():
        return asyncio.current_task(), asyncio.current_task(loop)

    task = loop.create_task(main())
    cur, cur2 = loop.run_until_complete(task)
    assert cur is task and cur2 is task
    assert asyncio.current_task(loop) is None


def test_current_task_in_callback_is_none(loop):
    seen = []

    async def main():
        loop.call_soon(lambda: seen.append(asyncio.current_task()))
        await asyncio.sleep(0)

    loop.run_until_complete(main())
    assert seen == [None]


def test_all_tasks(loop):
    fut = loop.create_future()

    async def waiter():
        await fut

    async def main():
        t = loop.create_task(waiter())
        await asyncio.sleep(0)
        assert t in asyncio.all_tasks()
        assert asyncio.current_task() in asyncio.all_tasks()
        fut.set_result(None)
        await t
        assert t not in asyncio.all_tasks()
        return t

    t = run(loop, main())
    assert t not in asyncio.all_tasks(loop)


def test_all_tasks_scheduled_not_started(loop):
    async def main():
        t = loop.create_task(_value(1))
        assert t in asyncio.all_tasks()
        await t
        assert t not in asyncio.all_tasks()

    run(loop, main())


def test_all_tasks_per_loop(loop, loop_factory):
    other = loop_factory()
    try:
        t_other = other.create_task(_value(1))

        async def main():
            return asyncio.all_tasks()

        tasks = loop.run_until_complete(main())
        assert t_other not in tasks
        assert t_other in asyncio.all_tasks(other)
        other.run_until_complete(t_other)
    finally:
        other.close()


# ---- eager tasks (3.12+) ----

@pytest.mark.skipif(not PY312, reason="eager_start is 3.12+")
def test_eager_start_completes_synchronously(loop, task_cls):
    async def immediate():
        return asyncio.current_task()

    async def main():
        t = task_cls(immediate(), loop=loop, eager_start=True)
        assert t.done()
        assert t.result() is t
        assert t not in asyncio.all_tasks()
        return t

    run(loop, main())


@pytest.mark.skipif(not PY312, reason="eager_start is 3.12+")
def test_eager_start_suspends(loop, task_cls):
    order = []

    async def body():
        order.append("start")
        await asyncio.sleep(0)
        order.append("end")
        return 1

    async def main():
        t = task_cls(body(), loop=loop, eager_start=True)
        order.append("created")
        assert not t.done()
        assert t in asyncio.all_tasks()
        return await t

    assert run(loop, main()) == 1
    assert order == ["start", "created", "end"]


@pytest.mark.skipif(not PY312, reason="eager_start is 3.12+")
def test_eager_start_loop_not_running(loop, task_cls):
    order = []

    async def body():
        order.append("ran")

    t = task_cls(body(), loop=loop, eager_start=True)
    assert order == [] and not t.done()
    loop.run_until_complete(t)
    assert order == ["ran"]


@pytest.mark.skipif(not PY312, reason="eager_task_factory is 3.12+")
def test_eager_task_factory(loop, impl, task_cls):
    if impl == "asyncio":
        factory = asyncio.eager_task_factory
    else:
        import fastloop
        factory = fastloop.eager_task_factory
    loop.set_task_factory(factory)

    async def immediate(x):
        return x, asyncio.current_task()

    async def main():
        t = loop.create_task(immediate(5), name="eager")
        assert type(t) is task_cls
        assert t.done()
        assert t.get_name() == "eager"
        x, cur = t.result()
        assert x == 5 and cur is t
        t2 = asyncio.ensure_future(_value(3))
        assert not t2.done()
        return await t2

    assert run(loop, main()) == 3


@pytest.mark.skipif(not PY312, reason="eager_start is 3.12+")
def test_eager_start_current_task_restored(loop, task_cls):
    async def inner():
        return asyncio.current_task()

    async def main():
        me = asyncio.current_task()
        t = task_cls(inner(), loop=loop, eager_start=True)
        assert asyncio.current_task() is me
        return t.result() is t

    assert run(loop, main()) is True


# ---- custom task factories ----

def test_task_factory_used(loop, task_cls):
    calls = []

    def factory(lp, coro, **kw):
        calls.append(kw)
        return task_cls(coro, loop=lp, **kw)

    loop.set_task_factory(factory)
    assert loop.get_task_factory() is factory
    t = loop.create_task(_value(1))
    assert type(t) is task_cls
    assert loop.run_until_complete(t) == 1
    assert len(calls) == 1


def test_asyncio_task_factory_on_loop(loop):
    """asyncio.Task as the factory on either loop."""
    loop.set_task_factory(lambda lp, coro, **kw: asyncio.Task(coro, loop=lp, **kw))

    async def main():
        t = loop.create_task(_value(2))
        assert type(t) is asyncio.Task
        assert asyncio.current_task() is not None
        return await t

    assert loop.run_until_complete(main()) == 2


def test_fastloop_task_factory_on_loop(loop):
    """fastloop.Task as the factory on either loop."""
    import fastloop
    loop.set_task_factory(lambda lp, coro, **kw: fastloop.Task(coro, loop=lp, **kw))

    async def main():
        t = loop.create_task(_value(2))
        assert type(t) is fastloop.Task
        cur = asyncio.current_task()
        assert type(cur) is fastloop.Task
        return await t

    assert loop.run_until_complete(main()) == 2


def test_python_task_subclass(loop, task_cls):
    class MyTask(task_cls):
        pass

    loop.set_task_factory(lambda lp, coro, **kw: MyTask(coro, loop=lp, **kw))

    async def main():
        t = loop.create_task(_value(4))
        assert type(t) is MyTask
        assert repr(t).startswith("<MyTask pending")
        return await t

    assert run(loop, main()) == 4


# ---- ordering and cancellation corner cases ----

def test_wakeup_order_between_done_callbacks(loop):
    """A task waiting on a future resumes in its place among the future's
    done callbacks (asyncio's wakeup is one of them)."""
    order = []
    fut = loop.create_future()

    async def waiter():
        await fut
        order.append("task")

    async def main():
        fut.add_done_callback(lambda f: order.append("cb1"))
        t = loop.create_task(waiter())
        await asyncio.sleep(0)
        fut.add_done_callback(lambda f: order.append("cb2"))
        loop.call_soon(order.append, "soon")
        fut.set_result(None)
        await t

    run(loop, main())
    assert order == ["soon", "cb1", "task", "cb2"]


def test_round_robin_sleep0(loop):
    order = []

    async def worker(name):
        for i in range(3):
            order.append(f"{name}{i}")
            await asyncio.sleep(0)

    async def main():
        await asyncio.gather(worker("a"), worker("b"), worker("c"))

    loop.run_until_complete(main())
    assert order == ["a0", "b0", "c0", "a1", "b1", "c1", "a2", "b2", "c2"]


def test_wakeup_order_many_waiters(loop):
    fut = loop.create_future()
    order = []

    async def w(i):
        await fut
        order.append(i)

    async def main():
        ts = [loop.create_task(w(i)) for i in range(6)]
        await asyncio.sleep(0)
        fut.set_result(None)
        await asyncio.gather(*ts)

    loop.run_until_complete(main())
    assert order == list(range(6))


def test_task_done_callbacks_order(loop):
    order = []

    async def body():
        return 1

    task = loop.create_task(body())
    task.add_done_callback(lambda t: order.append("cb1"))
    task.add_done_callback(lambda t: order.append("cb2"))
    loop.run_until_complete(task)
    loop.run_until_complete(asyncio.sleep(0))
    assert order == ["cb1", "cb2"]


def test_self_cancel(loop):
    async def body():
        asyncio.current_task().cancel("self")
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError as e:
            return ("caught", e.args)
        return "not cancelled"

    assert loop.run_until_complete(body()) == ("caught", ("self",))


def test_cancel_after_waited_future_completed(loop):
    """fut_waiter.cancel() returns False (already done): the cancel is
    delivered at the task's next step instead."""
    fut = loop.create_future()

    async def w():
        try:
            await fut
        except asyncio.CancelledError:
            return "cancelled"
        return "not"

    async def main():
        t = loop.create_task(w())
        await asyncio.sleep(0)
        fut.set_result(1)
        assert t.cancel() is True
        assert t._must_cancel is True
        return await t

    assert run(loop, main()) == "cancelled"


def test_await_done_future_does_not_yield(loop):
    order = []

    async def a():
        fut = loop.create_future()
        fut.set_result(1)
        await fut
        order.append("a")

    async def b():
        order.append("b")

    async def main():
        await asyncio.gather(a(), b())

    loop.run_until_complete(main())
    assert order == ["a", "b"]


def test_cancelled_error_subclass_cancels_task(loop):
    class MyCancel(asyncio.CancelledError):
        pass

    async def body():
        await asyncio.sleep(0)
        raise MyCancel("sub")

    task = loop.create_task(body())
    with pytest.raises(asyncio.CancelledError):
        loop.run_until_complete(task)
    assert task.cancelled()


def test_cancel_during_eager_like_first_step_then_catch(loop):
    """Cancelled before the first step: CancelledError is thrown into the
    coroutine at its first line; it may catch it and return."""
    async def body():
        try:
            await asyncio.sleep(0)
        except asyncio.CancelledError:
            return "caught-late"
        return "ran"

    async def main():
        t = loop.create_task(body())
        t.cancel()
        try:
            return await t
        except asyncio.CancelledError:
            return "cancelled-at-start"

    # the coroutine never started: the CancelledError is raised at its
    # first instruction, outside the try
    assert run(loop, main()) == "cancelled-at-start"


def test_await_task_of_other_loop(loop, loop_factory):
    other = loop_factory()
    try:
        foreign = other.create_task(_value(1))

        async def main():
            await foreign

        with pytest.raises(RuntimeError, match="attached to a different loop"):
            loop.run_until_complete(loop.create_task(main()))
        other.run_until_complete(foreign)
    finally:
        other.close()


def test_task_result_exception_states(loop):
    async def body():
        await asyncio.sleep(0)
        return 1

    task = loop.create_task(body())
    with pytest.raises(asyncio.InvalidStateError):
        task.result()
    with pytest.raises(asyncio.InvalidStateError):
        task.exception()
    loop.run_until_complete(task)
    assert task.exception() is None
