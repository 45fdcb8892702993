"""A run started from a panel: an asyncio task on the caller's loop, and a handle to await or stop it.

    handle = panel.start()          # or: panel.run_button.click(); handle = panel.handle
    result = await handle.result()  # waits for the run; nbmake and tests do not race past it

The clients run in worker processes (``labkit.run``'s default), so the
kernel's loop stays free for widgets and other cells while a run goes.
``handle.stop()`` cancels the task; the runner then stops its worker
processes before the task ends, so once ``await handle.wait()`` returns,
none is left.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable
from typing import Any

from ..errors import LabkitError
from ..experiment.result import Result
from .state import RunSettings

__all__ = ["RunHandle", "RunStopped", "start_run", "live_supported"]

log = logging.getLogger(__name__)

#: Called once when a run ends: (its Result, or None; None, or the error it ended with).
OnDone = Callable[[Result | None, BaseException | None], None]


class RunStopped(LabkitError):
    """The run was stopped (Stop, or ``handle.stop()``) before it finished: there is no Result."""


def _default_runner() -> Callable[..., Any]:
    from ..experiment.runner import run

    return run


def live_supported(runner: Callable[..., Any] | None = None) -> bool:
    """True when ``runner`` (default: ``labkit.experiment.runner.run``) takes a ``live=`` callback."""
    try:
        return "live" in inspect.signature(runner or _default_runner()).parameters
    except (TypeError, ValueError):
        return False


class RunHandle:
    """One run going on the event loop: ``await result()``, ``stop()``, ``done()``."""

    def __init__(self, task: asyncio.Task[Result], settings: RunSettings, live: bool) -> None:
        self.task = task
        self.settings = settings
        #: True when the runner was given the ``live`` callback (it takes ``live=``).
        self.live = live

    def done(self) -> bool:
        return self.task.done()

    @property
    def stopped(self) -> bool:
        """True when the run was stopped before it finished."""
        return self.task.done() and self.task.cancelled()

    def stop(self) -> bool:
        """Cancel the run (its worker processes are stopped as the task ends); False if it had ended."""
        if self.task.done():
            return False
        log.info("stopping the run: %s", self.settings.describe())
        return self.task.cancel()

    async def wait(self) -> None:
        """Wait until the run has ended, however it ended (never raises)."""
        await asyncio.gather(self.task, return_exceptions=True)

    async def result(self) -> Result:
        """The run's Result once it finished; RunStopped if it was stopped, or the error it failed with."""
        try:
            return await asyncio.shield(self.task)
        except asyncio.CancelledError:
            if self.task.cancelled():
                raise RunStopped(f"the run ({self.settings.describe()}) was stopped before it finished; "
                                 "press Run again for a Result") from None
            raise  # the caller itself was cancelled

    def __repr__(self) -> str:
        state = "stopped" if self.stopped else "done" if self.done() else "running"
        return f"<RunHandle {state}: {self.settings.describe()}>"


def start_run(lab: Any, settings: RunSettings, *, live: Callable[[dict[str, Any]], None] | None = None,
              on_done: OnDone | None = None, runner: Callable[..., Any] | None = None) -> RunHandle:
    """Start ``settings`` on ``lab`` as a task of the running event loop; return its handle at once.

    ``live``: called with each snapshot when the runner supports it
    (:func:`live_supported`).  ``on_done``: called once as the run ends,
    before anyone awaiting the handle resumes.  ``runner``: the coroutine
    function to call (default ``labkit.experiment.runner.run``).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        raise LabkitError("no event loop is running here; start runs from a notebook cell (Jupyter runs one) "
                          "or from a coroutine") from None
    chosen = runner or _default_runner()
    use_live = live is not None and live_supported(chosen)
    kwargs: dict[str, Any] = {"lab": lab, "options": dict(settings.options)}
    if use_live:
        kwargs["live"] = live

    told = False

    def tell(result: Result | None, error: BaseException | None) -> None:
        nonlocal told
        if not told:
            told = True
            _notify(on_done, result, error)

    async def go() -> Result:
        try:
            result = await chosen(settings.protocol, settings.workload(), **kwargs)
        except asyncio.CancelledError:
            tell(None, RunStopped("stopped"))
            raise
        except Exception as exc:
            tell(None, exc)
            raise
        tell(result, None)
        return result

    def ended(task: asyncio.Task[Result]) -> None:
        if task.cancelled():
            tell(None, RunStopped("stopped"))  # stopped before it began: go() never ran
        else:
            task.exception()  # a failure was shown by on_done: asyncio need not log it again at exit

    task = loop.create_task(go(), name=f"labkit run: {settings.describe()}")
    task.add_done_callback(ended)
    return RunHandle(task, settings, use_live)


def _notify(on_done: OnDone | None, result: Result | None, error: BaseException | None) -> None:
    """Tell ``on_done`` how the run ended; a failure there is logged, never put in place of the run's outcome."""
    if on_done is None:
        return
    try:
        on_done(result, error)
    except Exception:
        log.exception("showing the end of the run failed")
