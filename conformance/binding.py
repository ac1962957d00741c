"""Bind CPython's test.test_asyncio modules to the implementation under test.

An "implementation" is a small namespace (see child.make_impl):

    impl.new_event_loop()   makes a loop of the implementation
    impl.policy_class       an event loop policy whose loops are such loops
    impl.Task, impl.Future  the implementation's own Task/Future types,
                            or None while it has none

Binding happens in three ways, all in the child process that runs one module:

1. The event loop policy.  Every asyncio.new_event_loop(), asyncio.run(),
   asyncio.Runner() and IsolatedAsyncioTestCase (3.10-3.13) asks the policy
   for a loop.  install_policy() installs impl.policy_class and makes
   asyncio.set_event_loop_policy(None) (which every module's
   tearDownModule and several tests call) fall back to it again instead
   of asyncio's default policy.

2. Classes parameterized by implementation (Task/Future, cls,
   create_event_loop, new_loop): bind_module() adds copies of the C
   variants bound to impl.Task/impl.Future, and replaces the
   selector-specific loop classes by one bound to impl.new_event_loop.

3. Two modules build a mocked asyncio.BaseEventLoop by hand (test_runners,
   test_pep492); their helper is replaced by one that builds a real loop.

Tests that use test_utils.TestCase.new_test_loop() keep asyncio's TestLoop:
they test asyncio's own Task/Future logic against a virtual clock, not the
loop.
"""

import asyncio
import unittest
from asyncio import events


def install_policy(impl):
    """Make impl's policy the current and the default event loop policy."""
    def init_policy():
        events.set_event_loop_policy(impl.policy_class())

    # get_event_loop_policy() calls this when no policy is set (after
    # set_event_loop_policy(None)); stock asyncio makes a
    # DefaultEventLoopPolicy here.
    events._init_event_loop_policy = init_policy
    init_policy()


def clone_class(mod, template, name, **attrs):
    """Add to mod a subclass of its test class `template`, with attrs
    replaced.

    A subclass, not a copy: methods that call super() without arguments
    (3.14's setUp/tearDown of the C variants) look up their own class in
    the MRO of the instance.

    Returns the new class, or None if this Python's module has no such
    template class.
    """
    src = getattr(mod, template, None)
    if src is None:
        return None
    return make_test_class(mod, name, (src,), attrs)


def make_test_class(mod, name, bases, attrs):
    cls = type(name, bases, dict(attrs, __module__=mod.__name__,
                                 __qualname__=name))
    setattr(mod, name, cls)
    return cls


# --- Task/Future-parameterized modules --------------------------------------

def bind_test_tasks(mod, impl):
    bind_default_loop_class(mod, impl)
    if impl.Task is None or impl.Future is None:
        return
    from test.test_asyncio import utils as test_utils
    clone_class(mod, 'CTask_CFuture_Tests', 'FastloopTask_FastloopFuture_Tests',
                Task=impl.Task, Future=impl.Future)
    # add_subclass_tests() derives Task/Future subclasses from the class's
    # Task/Future when it decorates the class, so decorate a fresh one.
    if hasattr(mod, 'add_subclass_tests'):
        attrs = {'Task': impl.Task, 'Future': impl.Future}
        # 3.14+: the tests call self.current_task()/self.all_tasks(),
        # which each class names (asyncio's C ones for C tasks).
        template = vars(getattr(mod, 'CTask_CFuture_SubclassTests', object))
        attrs.update((k, template[k]) for k in ('all_tasks', 'current_task')
                     if k in template)
        cls = make_test_class(
            mod, 'FastloopTask_FastloopFuture_SubclassTests',
            (mod.BaseTaskTests, test_utils.TestCase), attrs)
        mod.add_subclass_tests(cls)


def bind_test_futures(mod, impl):
    if impl.Future is None:
        return
    Future = impl.Future
    SubFuture = type('FastloopSubFuture', (Future,), {})
    clone_class(mod, 'CFutureTests', 'FastloopFutureTests', cls=Future)
    clone_class(mod, 'CSubFutureTests', 'FastloopSubFutureTests',
                cls=SubFuture)
    clone_class(mod, 'CFutureDoneCallbackTests',
                'FastloopFutureDoneCallbackTests',
                _new_future=lambda self: Future(loop=self.loop))
    clone_class(mod, 'CSubFutureDoneCallbackTests',
                'FastloopSubFutureDoneCallbackTests',
                _new_future=lambda self: SubFuture(loop=self.loop))
    clone_class(mod, 'CFutureInheritanceTests',
                'FastloopFutureInheritanceTests',
                _get_future_cls=lambda self: Future)


def bind_test_futures2(mod, impl):
    # FutureTests.cls is a Task class there (it tests task tracebacks/repr).
    if impl.Task is not None:
        clone_class(mod, 'CFutureTests', 'FastloopFutureTests', cls=impl.Task)


def bind_test_eager_task_factory(mod, impl):
    bind_default_loop_class(mod, impl)
    if impl.Task is None:
        return
    clone_class(mod, 'CEagerTaskFactoryLoopTests',
                'FastloopEagerTaskFactoryLoopTests', Task=impl.Task)
    clone_class(mod, 'NonEagerCTaskTests', 'NonEagerFastloopTaskTests',
                Task=impl.Task)
    clone_class(mod, 'EagerCTaskTests', 'EagerFastloopTaskTests',
                Task=impl.Task)


def bind_default_loop_class(mod, impl):
    # 3.14+: tests that want "the default loop" without the policy say
    # asyncio.run(main(), loop_factory=asyncio.EventLoop) or call
    # asyncio.EventLoop() (test_tasks, test_eager_task_factory); the child
    # runs this one module, so asyncio.EventLoop is impl's loop class here.
    # (Not for test_runners: test_loop_factory_default_event_loop checks
    # that asyncio.EventLoop is asyncio's SelectorEventLoop.)
    if hasattr(asyncio, 'EventLoop'):
        asyncio.EventLoop = impl.loop_class


def bind_test_taskgroups(mod, impl):
    # 3.14+: the test classes run on loop_factory = asyncio.EventLoop (and
    # an eager variant on asyncio.EventLoop with asyncio.eager_task_factory)
    # instead of the policy's loop: bound copies run on impl's loop, with
    # an eager task factory of impl's Task.  Through 3.13 they have no
    # loop_factory and the policy binds them.
    eager_factory = asyncio.create_eager_task_factory(impl.Task) \
        if impl.Task is not None and hasattr(asyncio, 'create_eager_task_factory') \
        else getattr(asyncio, 'eager_task_factory', None)

    def eager_loop():
        loop = impl.new_event_loop()
        loop.set_task_factory(eager_factory)
        return loop

    for template, name, factory in (
            ('TestTaskGroup', 'FastloopTaskGroupTests', impl.new_event_loop),
            ('TestEagerTaskTaskGroup', 'FastloopEagerTaskTaskGroupTests',
             eager_loop)):
        tmpl = getattr(mod, template, None)
        if tmpl is None or 'loop_factory' not in vars(tmpl):
            continue
        clone_class(mod, template, name, loop_factory=staticmethod(factory))
        delattr(mod, template)


def module_task_loop(impl):
    """A loop of impl whose create_task(), with no task factory set, makes
    an asyncio.tasks.Task, as BaseEventLoop.create_task() does.

    The classes that test asyncio's own Task implementations (Py/C
    variants of test_graph and test_free_threading) install theirs as
    asyncio.tasks.Task and expect the loop's tasks (a Runner's, a
    TaskGroup's) to be of it.  fastloop's create_task() makes
    fastloop.Task; on this loop those classes test the Task they name, on
    fastloop's loop."""
    loop = impl.new_event_loop()
    create_task = loop.create_task

    def module_create_task(coro, **kwargs):
        if loop.get_task_factory() is not None:
            return create_task(coro, **kwargs)
        loop._check_closed()
        return asyncio.tasks.Task(coro, loop=loop, **kwargs)

    loop.create_task = module_create_task
    return loop


def bind_test_graph(mod, impl):
    # 3.14+.  The C and Py variants install their Task/Future and
    # awaited-by functions in setUp (tearDown restores them) and run on
    # loops that make asyncio.tasks.Task.
    factory = staticmethod(lambda: module_task_loop(impl))
    for name in ('TestCallStackC', 'TestCallStackPy'):
        if hasattr(mod, name):
            getattr(mod, name).loop_factory = factory
    if impl.Task is None or impl.Future is None:
        return

    # Ours: impl's loop (through the policy) makes impl's tasks; the
    # tests' own futures are asyncio.Future() calls.  asyncio.futures.Future
    # (the isinstance check of asyncio.graph) stays the C Future, the base
    # class of both impl's Task and Future.
    def setUp(self):
        super(cls, self).setUp()
        asyncio.Task = impl.Task
        asyncio.Future = impl.Future

    cls = clone_class(mod, 'TestCallStackC', 'TestCallStackFastloop',
                      setUp=setUp, loop_factory=None)


def bind_test_free_threading(mod, impl):
    # 3.14+ (run on the GIL build too): all_tasks()/current_task() races
    # between threads, each thread running its own loop (asyncio.Runner(),
    # asyncio.new_event_loop(): the policy's) with a task factory of the
    # class's Task.  The Py/C variants get loops that make asyncio.tasks.Task
    # for the tasks they create without the factory (see
    # module_task_loop), while the test runs.
    policy_class = type('ModuleTaskPolicy', (impl.policy_class,), {
        '_loop_factory': staticmethod(lambda: module_task_loop(impl))})
    for name in ('TestPyFreeThreading', 'TestCFreeThreading'):
        tmpl = getattr(mod, name, None)
        if tmpl is None:
            continue

        def setUp(self, _setUp=tmpl.setUp):
            if getattr(self, 'module_task_loops', True):
                events._set_event_loop_policy(policy_class())
            return _setUp(self)

        def tearDown(self, _tearDown=tmpl.tearDown):
            try:
                return _tearDown(self)
            finally:
                # Back to impl's policy (see install_policy).
                events._set_event_loop_policy(None)

        tmpl.setUp = setUp
        tmpl.tearDown = tearDown
    if impl.Task is None or impl.Future is None:
        return

    # Ours: impl's own loops, a task factory of impl's Task.
    def factory(self, loop, coro, **kwargs):
        return impl.Task(coro, loop=loop, **kwargs)

    def eager_factory(self, loop, coro, eager_start=True, **kwargs):
        return impl.Task(coro, loop=loop, eager_start=eager_start, **kwargs)

    def setUp(self):
        super(cls, self).setUp()
        asyncio.Task = impl.Task
        asyncio.Future = impl.Future

    cls = clone_class(mod, 'TestCFreeThreading', 'TestFastloopFreeThreading',
                      setUp=setUp, factory=factory, module_task_loops=False)
    if cls is not None:
        make_test_class(mod, 'TestEagerFastloopFreeThreading', (cls,),
                        {'factory': eager_factory})


# --- modules that build a mocked BaseEventLoop ------------------------------

def bind_test_runners(mod, impl):
    # BaseTest.new_loop is the loop factory of the policy every test in the
    # module installs.  Stock: a BaseEventLoop with a mocked selector, plus
    # a shutdown_asyncgens stub that records it was called (tearDown checks
    # it).  Here: a real loop with the same stub.
    def new_loop(self):
        loop = impl.new_event_loop()
        loop.shutdown_ag_run = False

        async def shutdown_asyncgens():
            loop.shutdown_ag_run = True
        loop.shutdown_asyncgens = shutdown_asyncgens
        return loop

    mod.BaseTest.new_loop = new_loop


def bind_test_pep492(mod, impl):
    # Stock: a BaseEventLoop with a mocked selector.
    def setUp(self):
        super(mod.BaseTest, self).setUp()
        self.loop = impl.new_event_loop()
        self.set_event_loop(self.loop)

    mod.BaseTest.setUp = setUp


# --- network modules (later issues): one loop class per selector ------------

# module -> (template class, loop factory method, name of the bound class)
LOOP_CLASSES = {
    'test_events': ('EPollEventLoopTests', 'create_event_loop',
                    'FastloopEventLoopTests'),
    'test_sock_lowlevel': ('EPollEventLoopTests', 'create_event_loop',
                           'FastloopEventLoopTests'),
    'test_sendfile': ('EPollEventLoopTests', 'create_event_loop',
                      'FastloopEventLoopTests'),
    'test_buffered_proto': ('BufferedProtocolSelectorTests', 'new_loop',
                            'BufferedProtocolFastloopTests'),
    'test_server': ('SelectorStartServerTests', 'new_loop',
                    'FastloopStartServerTests'),
    'test_sslproto': ('SelectorStartTLSTests', 'new_loop',
                      'FastloopStartTLSTests'),
}


def bind_loop_classes(mod, impl, template, method, name):
    """Replace the per-selector test classes by one bound to impl."""
    clone_class(mod, template, name,
                **{method: lambda self: impl.new_event_loop()})
    # The per-selector classes test asyncio's own loops: drop them.
    for attr, obj in list(vars(mod).items()):
        if (attr != name and isinstance(obj, type)
                and issubclass(obj, unittest.TestCase)
                and method in vars(obj)):
            delattr(mod, attr)


def bind_test_server_context(mod, impl):
    # 3.15: servers run each connection in a copy of the context current
    # when the server was made.  The classes take a loop_factory.
    factory = staticmethod(impl.new_event_loop)
    for template, name in (('AsyncioEventLoopTests', 'FastloopEventLoopTests'),
                           ('AsyncioEventLoopSSLTests',
                            'FastloopEventLoopSSLTests')):
        if clone_class(mod, template, name, loop_factory=factory):
            delattr(mod, template)


def bind_test_events(mod, impl):
    # 3.14+: which file objects connect_read_pipe/connect_write_pipe
    # accept, on a loop the class makes with asyncio.SelectorEventLoop().
    if not hasattr(mod, 'UnixPipeObjectSupportTests'):
        return

    def setUp(self):
        unittest.TestCase.setUp(self)
        self.loop = impl.new_event_loop()
        self.addCleanup(self.loop.close)

    clone_class(mod, 'UnixPipeObjectSupportTests',
                'FastloopPipeObjectSupportTests', setUp=setUp)
    delattr(mod, 'UnixPipeObjectSupportTests')


BINDERS = {
    'test_tasks': bind_test_tasks,
    'test_futures': bind_test_futures,
    'test_futures2': bind_test_futures2,
    'test_eager_task_factory': bind_test_eager_task_factory,
    'test_runners': bind_test_runners,
    'test_pep492': bind_test_pep492,
    'test_taskgroups': bind_test_taskgroups,
    'test_events': bind_test_events,
    'test_graph': bind_test_graph,
    'test_free_threading': bind_test_free_threading,
    'test_server_context': bind_test_server_context,
}


def bind_module(mod, impl):
    short = mod.__name__.rsplit('.', 1)[-1]
    if short in BINDERS:
        BINDERS[short](mod, impl)
    if short in LOOP_CLASSES:
        bind_loop_classes(mod, impl, *LOOP_CLASSES[short])
