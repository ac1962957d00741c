"""asyncio's introspection sees fastloop's tasks: all_tasks(), current_task()
from any thread, the call graph (3.14+), and `python -m asyncio ps`/`pstree`
(3.14+), which read the tasks out of another process's memory.

Every test runs on asyncio's loop and on fastloop and expects the same."""
import asyncio
import re
import subprocess
import sys
import threading
import time

import pytest

from fl_support import ROOT, popen_py, run_py, describe, subprocess_env


def run(loop, coro):
    # Not fl_support.run(): its wait_for() adds a task of its own on 3.11.
    return loop.run_until_complete(coro)

PY314 = sys.version_info >= (3, 14)
needs_314 = pytest.mark.skipif(not PY314, reason="3.14+ introspection")


def test_binds_published_offsets():
    """On 3.14+ fastloop found and checked asyncio's published offsets (a
    failure here means every test below runs on the fallback)."""
    import fastloop
    assert fastloop._core._base_fields_bound() is PY314


def test_all_tasks_sees_running_tasks(loop):
    async def sleeper():
        await asyncio.sleep(10)

    async def main():
        tasks = [asyncio.create_task(sleeper(), name=f"s{i}") for i in range(3)]
        await asyncio.sleep(0)
        found = asyncio.all_tasks()
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        return found, tasks, asyncio.current_task(), asyncio.all_tasks()

    found, tasks, me, after = run(loop, main())
    assert found == set(tasks) | {me}
    assert after == {me}


def test_all_tasks_and_current_task_from_another_thread(loop):
    """all_tasks(loop) and current_task(loop) asked from another thread while
    a task of the loop runs (and holds the loop busy)."""
    seen = {}

    def probe():
        seen["all"] = asyncio.all_tasks(loop)
        seen["current"] = asyncio.current_task(loop)

    async def other():
        await asyncio.sleep(10)

    async def main():
        t = asyncio.create_task(other(), name="other")
        await asyncio.sleep(0)
        th = threading.Thread(target=probe)
        th.start()
        while th.is_alive():        # stays the running task meanwhile
            time.sleep(0.001)
        t.cancel()
        return asyncio.current_task(), t

    me, other_task = run(loop, main())
    assert seen["current"] is me
    assert seen["all"] == {me, other_task}


def test_done_tasks_leave_all_tasks(loop):
    async def quick():
        return 1

    async def main():
        tasks = [asyncio.create_task(quick()) for _ in range(50)]
        await asyncio.gather(*tasks)
        return asyncio.all_tasks(), asyncio.current_task()

    after, me = run(loop, main())
    assert after == {me}


def test_freed_pending_task_leaves_task_list(loop):
    """A pending task that is garbage collected is unlinked from the task
    list all_tasks() walks (a dangling entry would crash the next walk)."""
    import gc
    import weakref

    async def forever():
        await asyncio.Event().wait()

    async def main():
        refs = []
        for _ in range(20):
            t = asyncio.create_task(forever())
            await asyncio.sleep(0)
            t._log_destroy_pending = False
            refs.append(weakref.ref(t))
            del t
        # The tasks and the events they wait on are only a cycle now.
        gc.collect()
        return [r for r in refs if r() is not None], asyncio.all_tasks()

    alive, tasks = run(loop, main())
    assert alive == []
    assert len(tasks) == 1      # main itself, and no dangling entry


@pytest.mark.skipif(sys.version_info < (3, 12), reason="eager_start is 3.12+")
def test_eager_task_registered_while_it_runs_eagerly(loop):
    seen = []

    async def child():
        seen.append(asyncio.current_task() in asyncio.all_tasks())
        await asyncio.sleep(0)
        return 5

    async def main():
        if PY314:
            t = asyncio.get_running_loop().create_task(child(), eager_start=True)
        else:
            t = asyncio.Task(child(), loop=asyncio.get_running_loop(), eager_start=True)
        ran_eagerly = list(seen)
        return ran_eagerly, await t

    assert run(loop, main()) == ([True], 5)


@needs_314
def test_create_task_forwards_keywords_to_factory(loop):
    got = {}

    def factory(lp, coro, **kwargs):
        got.update(kwargs)
        return asyncio.Task(coro, loop=lp, **kwargs)

    async def child():
        return 1

    async def main():
        asyncio.get_running_loop().set_task_factory(factory)
        t = asyncio.get_running_loop().create_task(child(), name="n",
                                                   eager_start=True)
        return t.get_name(), t.done(), await t

    assert run(loop, main()) == ("n", True, 1)
    assert got == {"name": "n", "eager_start": True}


def test_run_cancels_leftover_tasks(impl):
    """asyncio.run()/fastloop.run() cancel a task main() left behind, so its
    finally clause runs and nothing is reported destroyed while pending."""
    proc = run_py("""
        import fastloop
        async def background():
            try:
                await asyncio.sleep(100)
            finally:
                print("finally ran", flush=True)
        async def main():
            asyncio.create_task(background())
            await asyncio.sleep(0)
        if sys.version_info >= (3, 12):
            asyncio.run(main(), loop_factory=loop_factory())
        else:
            with asyncio.Runner(loop_factory=loop_factory()) as r:
                r.run(main())
        print("done", flush=True)
    """, impl)
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout.split() == ["finally", "ran", "done"], describe(proc)
    assert "destroyed but it is pending" not in proc.stderr, describe(proc)


# ---- the call graph (3.14+) ----

def _normalize(text):
    text = re.sub(r"0x[0-9a-f]+", "0x?", text)
    return re.sub(r"line \d+", "line ?", text)


GRAPH_CASES = {
    "taskgroup": """
        async with asyncio.TaskGroup() as tg:
            tg.create_task(leaf(), name="child")
    """,
    "gather": """
        await asyncio.gather(asyncio.create_task(leaf(), name="child"))
    """,
    "shield": """
        await asyncio.shield(asyncio.create_task(leaf(), name="child"))
    """,
    "wait_for": """
        await asyncio.wait_for(asyncio.create_task(leaf(), name="child"), 5)
    """,
    "timeout": """
        async with asyncio.timeout(5):
            await asyncio.create_task(leaf(), name="child")
    """,
    "as_completed": """
        for f in asyncio.as_completed([asyncio.create_task(leaf(), name="child")]):
            await f
    """,
    "wait": """
        await asyncio.wait([asyncio.create_task(leaf(), name="child")])
    """,
}


@needs_314
@pytest.mark.parametrize("case", sorted(GRAPH_CASES))
def test_call_graph_matches_asyncio(case):
    """format_call_graph() of a child task, seen from inside it, names the
    same awaiter chain on fastloop as on asyncio."""
    body = "\n".join("            " + line for line in
                     GRAPH_CASES[case].strip("\n").splitlines())
    code = f"""
        graphs = []
        async def leaf():
            await asyncio.sleep(0)
            graphs.append(asyncio.format_call_graph())
        async def parent():
{body}
        async def main():
            await asyncio.create_task(parent(), name="parent")
        asyncio.run(main(), loop_factory=loop_factory())
        print(graphs[0])
    """
    import textwrap
    code = textwrap.dedent(code)
    outs = {impl: run_py(code, impl) for impl in ("asyncio", "fastloop")}
    for proc in outs.values():
        assert proc.returncode == 0, describe(proc)
    a, f = (_normalize(outs[i].stdout) for i in ("asyncio", "fastloop"))
    assert "parent" in a
    assert f == a


@needs_314
def test_print_call_graph_of_taskgroup_child(loop):
    """print_call_graph(child) from outside the child shows its awaiter."""
    import io

    async def leaf():
        await asyncio.sleep(10)

    async def parent(started):
        async with asyncio.TaskGroup() as tg:
            started.set_result(tg.create_task(leaf(), name="leaf"))

    async def main():
        started = asyncio.get_running_loop().create_future()
        p = asyncio.create_task(parent(started), name="parent")
        child = await started
        await asyncio.sleep(0)
        out = io.StringIO()
        asyncio.print_call_graph(child, file=out)
        child.cancel()
        await asyncio.gather(p, return_exceptions=True)
        return out.getvalue()

    text = run(loop, main())
    assert "name='leaf'" in text
    assert "name='parent'" in text
    assert "TaskGroup" in text


@needs_314
def test_awaited_by_attribute_tracks_the_awaiting_task(loop):
    async def main():
        fut = asyncio.get_running_loop().create_future()

        async def waiter():
            await fut

        t = asyncio.create_task(waiter())
        await asyncio.sleep(0)
        during = fut._asyncio_awaited_by
        fut.set_result(None)
        await t
        return during, t, fut._asyncio_awaited_by

    during, t, after = run(loop, main())
    assert during == frozenset({t})
    assert after is None


# ---- `python -m asyncio ps` / `pstree` (3.14+) ----

PS_TARGET = """
    async def leaf(n):
        await asyncio.sleep(100)
    async def group():
        async with asyncio.TaskGroup() as tg:
            for i in range(3):
                tg.create_task(leaf(i), name=f"leaf-{i}")
    async def main():
        t = asyncio.create_task(group(), name="group")
        await asyncio.sleep(0.05)
        print("READY", flush=True)
        await t
    asyncio.run(main(), loop_factory=loop_factory())
"""


def _ps(impl, tool):
    proc = popen_py(PS_TARGET, impl)
    try:
        assert proc.stdout.readline().strip() == "READY"
        out = subprocess.run([sys.executable, "-m", "asyncio", tool, str(proc.pid)],
                             capture_output=True, text=True, timeout=30,
                             env=subprocess_env(impl), cwd=ROOT)
    finally:
        proc.kill()
        proc.communicate()
    if "Operation not permitted" in out.stderr or "Permission denied" in out.stderr:
        pytest.skip("reading another process's memory is not permitted here")
    assert out.returncode == 0, out.stderr
    return out.stdout


@needs_314
def test_asyncio_ps_shows_fastloop_tasks():
    rows = {}
    for impl in ("asyncio", "fastloop"):
        text = _ps(impl, "ps")
        rows[impl] = sorted(
            " ".join(line.split()[2:]).replace("0x", "")
            for line in text.splitlines()[2:] if line.strip())
        # ids are addresses: keep the name, coroutine stack, awaiter chain
        rows[impl] = [re.sub(r"\b[0-9a-f]{6,}\b", "?", r) for r in rows[impl]]
    assert len(rows["fastloop"]) == 5, rows
    assert rows["fastloop"] == rows["asyncio"]


@needs_314
def test_asyncio_pstree_shows_fastloop_tasks():
    trees = {impl: _ps(impl, "pstree") for impl in ("asyncio", "fastloop")}
    for name in ("group", "leaf-0", "leaf-1", "leaf-2", "TaskGroup._aexit"):
        assert name in trees["fastloop"], trees["fastloop"]
    assert _normalize(trees["fastloop"]) == _normalize(trees["asyncio"])
