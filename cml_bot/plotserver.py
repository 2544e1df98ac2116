"""Plots drawn by a process started early in a run, so importing matplotlib (about a third of a
second of CPU) happens on the other core while the run reads git, metrics files and the forge,
instead of after it.

:func:`start` forks the process (on Linux, from a process with no other thread: forking is safe
there), which imports the drawing modules at once and then answers calls, each a function named by
module and attribute with picklable arguments, until the run closes the pipe. Where forking is not
safe, or the process cannot start, calls run in this process instead: same results, no overlap.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Protocol

log = logging.getLogger(__name__)

DRAWING_MODULES = ("cml_bot.plots.render", "cml_bot.plots.figures")


class Plotter(Protocol):
    def call(self, function: str, *args: Any) -> Any:
        """Run ``"module:attribute"`` with ``args`` and return its result (or raise its error)."""
        ...

    def submit(self, function: str, *args: Any) -> Callable[[], Any]:
        """Start :meth:`call`; the returned function waits for its result. Until then no other
        call starts. The run judges the change while the plots are drawn."""
        ...

    def close(self) -> None: ...


def _resolve(function: str) -> Any:
    module, _, name = function.partition(":")
    return getattr(importlib.import_module(module), name)


class InProcess:
    """Calls run here (the drawing modules are imported on the first call)."""

    def call(self, function: str, *args: Any) -> Any:
        return _resolve(function)(*args)

    def submit(self, function: str, *args: Any) -> Callable[[], Any]:
        return lambda: self.call(function, *args)  # drawn when waited for: nothing to overlap here

    def close(self) -> None:
        pass


class PlotServer:
    """A forked process that imported the drawing modules and runs calls sent through a pipe."""

    def __init__(self, process: multiprocessing.process.BaseProcess, connection: Connection) -> None:
        self.process = process
        self.connection = connection
        self._lock = threading.Lock()

    def call(self, function: str, *args: Any) -> Any:
        return self.submit(function, *args)()

    def submit(self, function: str, *args: Any) -> Callable[[], Any]:
        self._lock.acquire()  # released when the result is read: one call on the pipe at a time
        # Sent from a thread: a large job fills the pipe while the process still imports, and the
        # run has other work to do meanwhile (the write releases the GIL).
        failed: list[BaseException] = []

        def send() -> None:
            try:
                self.connection.send((function, args))
            except (OSError, BrokenPipeError) as exc:
                failed.append(exc)

        sender = threading.Thread(target=send, name="cml-bot-plot-send", daemon=True)
        sender.start()

        def result() -> Any:
            try:
                sender.join()
                if failed:
                    raise failed[0]
                status, value = self.connection.recv()
            except (EOFError, OSError, BrokenPipeError) as exc:
                log.info("plot process gone (%s); drawing here", exc)
                return InProcess().call(function, *args)
            finally:
                self._lock.release()
            if status == "error":
                raise value
            return value

        return result

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.connection.close()
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.terminate()


def _serve(connection: Connection, parents_end: Connection) -> None:
    parents_end.close()  # inherited by the fork: open here, the run's close() would never reach us
    for module in DRAWING_MODULES:  # what this process is for: import while the run goes on
        importlib.import_module(module)
    if not connection.poll():  # still idle: draw once, so fonts and caches are loaded before the
        _warm_up()  # workers that draw the real plots are forked from here
    while True:
        try:
            function, args = connection.recv()
        except (EOFError, OSError):
            return
        try:
            reply: tuple[str, Any] = ("ok", _resolve(function)(*args))
        except Exception as exc:  # the caller re-raises it
            reply = ("error", exc)
        connection.send(reply)


def _warm_up() -> None:
    from cml_bot.config import PlotSpec
    from cml_bot.plots.render import render_plot

    try:
        render_plot(PlotSpec("warm-up.csv", title="warm-up"), b"step,loss\n0,1\n1,0.5\n", b"step,loss\n0,2\n", "w")
    except Exception as exc:  # only ever a head start: never a reason to fail
        log.debug("plot warm-up failed: %s", exc)


def fork_is_safe() -> bool:
    return sys.platform == "linux" and threading.active_count() == 1 and os.environ.get("CML_BOT_PLOT_WORKERS") != "1"


def start() -> Plotter:
    """A plot process when it can help (the drawing modules not imported yet, forking safe), else
    calls in this process."""
    if "matplotlib" in sys.modules or not fork_is_safe():
        return InProcess()
    context = multiprocessing.get_context("fork")
    parent, child = context.Pipe()
    process = context.Process(target=_serve, args=(child, parent), name="cml-bot-plots", daemon=False)
    try:
        process.start()
    except OSError as exc:
        log.info("no plot process (%s); drawing here", exc)
        return InProcess()
    child.close()
    server = PlotServer(process, parent)
    atexit.register(server.close)
    return server
