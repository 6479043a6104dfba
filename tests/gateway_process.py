"""Gateway processes forked from one interpreter that has TokOne imported already.

A `tokone serve` process spends about a second of CPU importing Litestar, SQLAlchemy,
httpx, uvicorn and TokOne's own packages before it binds its port, and the suite starts
about a hundred of them. :func:`start` runs the same command, `tokone --config … serve
--port …`, in a process forked from a multiprocessing fork server that imported those
modules once (at this module's import, in that server), with the environment, working
directory, `PYTHONPATH` and log file the test asked for. The process is a real server on a
real port, stopped by a real signal; only the interpreter start-up is shared.

`TOKONE_TEST_FRESH_INTERPRETER=1` makes every gateway a new interpreter again (`python -m
tokone.core.cli.main …`), and `test_cli.py` always starts the installed `tokone` script.
"""

from __future__ import annotations

import gc
import importlib
import multiprocessing
import os
import pkgutil
import signal
import subprocess
import sys
from pathlib import Path

TESTS = str(Path(__file__).resolve().parent)
FRESH = os.environ.get("TOKONE_TEST_FRESH_INTERPRETER", "") == "1"
_CONTEXT = multiprocessing.get_context("forkserver")


def preloaded_modules() -> list[str]:
    """What the fork server imports once: every TokOne module, and the libraries a gateway
    imports only when it builds its app (the console's templates, Litestar's plugins)."""
    names = [__name__, "pytest"]  # each child runs the parent's main script (pytest's) again
    names += [
        *("uvicorn", "uvicorn.lifespan.on", "uvicorn.loops.auto", "uvicorn.protocols.http.auto"),
        *("uvicorn.protocols.websockets.auto", "anyio._backends._asyncio", "httpcore", "h11"),
        *("jinja2", "litestar.plugins.pydantic", "litestar.plugins.attrs", "litestar._kwargs"),
        *("litestar.logging.standard", "litestar.middleware.response_cache", "certifi"),
        *("sqlalchemy.dialects.sqlite", "sqlalchemy.dialects.postgresql", "psycopg"),
        *("redis.asyncio",),
    ]
    for package in ("tokone.core", "tokone.plugins", "tokone.providers"):
        path = importlib.import_module(package).__path__
        names += [found.name for found in pkgutil.walk_packages(path, package + ".")]
    return names


_CONTEXT.set_forkserver_preload(preloaded_modules())


def warm_up() -> None:
    """Start the fork server now (it imports TokOne in the background), while `sys.path`
    still holds only what the session started with: the server keeps the path it got."""
    if not FRESH:
        from multiprocessing import forkserver

        forkserver.ensure_running()


def _serve(argv: list[str], cwd: str, env: dict[str, str], log: str) -> None:
    """The forked child: become `tokone ARGV` run in `cwd` with `env`, writing to `log`."""
    # What the fork server imported (pytest's modules among them) is never garbage here: out
    # of the collector's reach, as a new interpreter's modules would not be there at all.
    gc.freeze()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    os.close(fd)
    for stream in (sys.stdout, sys.stderr):
        stream.reconfigure(write_through=True)  # type: ignore[attr-defined]
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    extra = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
    sys.path[:] = extra + [p for p in sys.path if p not in ("", TESTS)]
    sys.argv = ["tokone", *argv]
    from tokone.core.cli.main import app

    app(args=argv, prog_name="tokone")


class ForkedProcess:
    """The few `subprocess.Popen` methods the tests use, over a forked gateway process."""

    def __init__(self, process: multiprocessing.process.BaseProcess) -> None:
        self._process = process
        self.pid = process.pid
        self.args = process.name

    def poll(self) -> int | None:
        """The exit status if the process has ended (negative: the signal), else None."""
        return self._process.exitcode

    def send_signal(self, sig: int) -> None:
        """Send `sig` to the process."""
        os.kill(self.pid, sig)  # type: ignore[arg-type]

    def kill(self) -> None:
        """SIGKILL the process."""
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to end; its exit status (TimeoutExpired after `timeout`)."""
        self._process.join(timeout)
        if self._process.exitcode is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return self._process.exitcode


def start(argv: list[str], cwd: Path, env: dict[str, str], log: Path) -> ForkedProcess:
    """Run `tokone ARGV` as a server process (forked, or a new interpreter when FRESH)."""
    if FRESH:
        with log.open("ab") as out:
            popen = subprocess.Popen(
                [sys.executable, "-m", "tokone.core.cli.main", *argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=cwd,
                env=env,
            )
        return popen  # type: ignore[return-value]
    process = _CONTEXT.Process(
        target=_serve, args=(argv, str(cwd), env, str(log)), name=f"tokone {' '.join(argv)}"
    )
    process.daemon = True  # ended with the test session if a test forgets it
    process.start()
    return ForkedProcess(process)
