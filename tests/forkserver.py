"""The CLI test driver: imports what every mlbench run imports, once, then forks one child per
request read from stdin (a JSON line: args, cwd, env, module, out and err files) and answers
with the child's exit status on a line of its own. Each child runs ``main()`` of ``module``
with ``args`` as its command line, exactly as a user's process would after its imports.

A forked child must not run C++ static destructors (unsafe after fork), so it ends the way
the interpreter would, less those: non-daemon threads joined (``threading._shutdown``, which
also shuts down the executors they serve), atexit handlers run (``atexit._run_exitfuncs``),
output flushed, then ``os._exit``. Both are CPython internals with no public equivalent.
"""

from __future__ import annotations

import atexit
import importlib
import json
import os
import sys
import threading
import traceback

import onnxruntime  # noqa: F401 - imported once here, inherited by every child
import torch.onnx  # noqa: F401

import mlbench.cli  # noqa: F401
import mlbench.export  # noqa: F401
import mlbench.pipeline  # noqa: F401


def child(req: dict) -> int:
    """Run one command line in this (forked) process; its exit status."""
    os.chdir(req["cwd"])
    os.environ.clear()
    os.environ.update(req["env"])
    sys.path[:0] = [p for p in req["env"].get("PYTHONPATH", "").split(os.pathsep) if p]
    for fd, name in ((1, "out"), (2, "err")):
        os.dup2(os.open(req[name], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
    sys.stdout, sys.stderr = open(1, "w", closefd=False), open(2, "w", closefd=False)
    sys.argv = ["mlbench", *req["args"]]
    try:
        importlib.import_module(req["module"]).main()
        return 0
    except SystemExit as x:
        return x.code if isinstance(x.code, int) else (0 if x.code is None else 1)
    except BaseException:
        traceback.print_exc()
        return 1


def finish(code: int) -> None:
    """The interpreter's exit, less C++ static destructors (unsafe in a fork)."""
    threading._shutdown()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        req = json.loads(line)
        pid = os.fork()
        if pid == 0:
            finish(child(req))
        _, status = os.waitpid(pid, 0)
        print(json.dumps(os.waitstatus_to_exitcode(status)), flush=True)


if __name__ == "__main__":
    serve()
