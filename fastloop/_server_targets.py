"""`python -m fastloop` with servers that choose their own event loop.

`python -m fastloop` makes fastloop the default loop through asyncio's
policy. Some servers never ask the policy, and would run on another loop
without a word:

- uvicorn (0.36+) makes its loop with the factory its --loop names, "auto"
  by default: uvloop when it is installed, else asyncio's SelectorEventLoop.
  With no --loop given, fastloop adds `--loop fastloop:new_event_loop`.
- hypercorn's asyncio worker does ask the policy, but by default it serves
  from one worker process started with multiprocessing's "spawn": a fresh
  interpreter without fastloop's policy. With no --workers given, fastloop
  adds `--workers 0` (serve in this process).

Each change is said on stderr; an explicit choice that leaves fastloop out
is kept, with a warning that names the option to use instead.
"""
import sys

LOOP_FACTORY = "fastloop:new_event_loop"


def adjust(target, args):
    """The arguments to run `target` (a module name, or a script's file
    name) with, so that it serves on fastloop."""
    name = target.rsplit("/", 1)[-1]
    if name.endswith(".py"):
        name = name[:-3]
    handler = _HANDLERS.get(name)
    if handler is None or _asks_for_help(args):
        return list(args)
    return handler(list(args))


def _uvicorn(args):
    loop = _option_value(args, long="--loop")
    if loop is None:
        _say("uvicorn chooses its own event loop (--loop auto: uvloop when "
             "installed, else asyncio's), never fastloop's policy; running it "
             f"with --loop {LOOP_FACTORY}")
        return ["--loop", LOOP_FACTORY, *args]
    # "none" leaves the loop to asyncio.run(), that is to fastloop's policy.
    if loop != "none" and not loop.startswith("fastloop:"):
        _say(f"uvicorn --loop {loop} makes its own loop: this server will not "
             f"run on fastloop (use --loop {LOOP_FACTORY})")
    return args


def _hypercorn(args):
    worker = _option_value(args, long="--worker-class", short="-k")
    if worker is not None and worker != "asyncio":
        _say(f"hypercorn --worker-class {worker} makes its own loop: this "
             "server will not run on fastloop (use the asyncio worker class)")
        return args
    workers = _option_value(args, long="--workers", short="-w")
    if workers is None:
        if "--reload" in args:
            _say("hypercorn --reload needs worker processes, which start "
                 "without fastloop: this server will not run on fastloop")
            return args
        _say("hypercorn's worker processes start afresh, without fastloop; "
             "serving in this process instead, with --workers 0")
        return ["--workers", "0", *args]
    if workers != "0":
        _say(f"hypercorn --workers {workers}: worker processes start afresh, "
             "without fastloop: this server will not run on fastloop (use "
             "--workers 0, or hypercorn.asyncio.serve() in fastloop.run())")
    return args


_HANDLERS = {"uvicorn": _uvicorn, "hypercorn": _hypercorn}


def _option_value(args, *, long, short=None):
    """The last value given to an option (`--opt V`, `--opt=V`, `-o V`,
    `-oV`), or None; arguments after `--` are not options."""
    value = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            break
        if arg in (long, short) and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        elif arg.startswith(long + "="):
            value = arg[len(long) + 1:]
        elif short and arg.startswith(short) and len(arg) > len(short):
            value = arg[len(short):]
        i += 1
    return value


def _asks_for_help(args):
    return any(a in ("-h", "--help", "--version") for a in args)


def _say(message):
    print(f"fastloop: {message}", file=sys.stderr)
