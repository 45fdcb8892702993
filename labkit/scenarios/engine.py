"""Walk one scenario through its phases on the current event loop (used by the worker and inline runs).

Phases: setup (connect, declare, subscribe; bounded by ``SETUP_TIMEOUT_S``)
-> the clock starts ``START_MARGIN_S`` later -> warm-up -> measure -> drain
(until every flow has all it expects, or ``drain_s``) -> finish (late
checks) -> close.  Each phase is bounded, and the clients close even when
a phase fails.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from ..errors import LabkitTimeout
from .context import Requester, ScenarioContext

log = logging.getLogger(__name__)

__all__ = ["execute", "SETUP_TIMEOUT_S", "FINISH_TIMEOUT_S", "START_MARGIN_S"]

#: Deadline for a scenario's setup: connecting and subscribing every client (s).
SETUP_TIMEOUT_S = 60.0
#: Deadline for a scenario's finish step (s).
FINISH_TIMEOUT_S = 90.0
#: Gap between the end of setup and the start of the clock (s).
START_MARGIN_S = 0.1
#: How late play() may return after end_ns before the run is called hung (s).
PLAY_GRACE_S = 30.0


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system


async def _bounded(coro: Any, timeout: float, what: str) -> None:
    try:
        async with asyncio.timeout(timeout):
            await coro
    except TimeoutError:
        raise LabkitTimeout(f"{what} did not finish within {timeout:g} s") from None


async def execute(scenario: Any, urls: dict[str, str], *, prefixes: dict[str, str] | None = None,
                  requester: Requester | None = None, timeout: float = 10.0) -> tuple[ScenarioContext, dict[str, Any]]:
    """Run ``scenario`` against the brokers at ``urls``; return its context (records inside) and timings.

    Timings (monotonic ns, and this process's CPU s): ``start_ns``,
    ``measure_start_ns``, ``end_ns``, ``drained_ns``, ``cpu_s``, ``wall_s``.
    """
    ctx = ScenarioContext(scenario, urls, prefixes=prefixes, requester=requester, timeout=timeout)
    cpu0, wall0 = _cpu_s(), time.monotonic()
    name = type(scenario).__name__
    try:
        await _bounded(scenario.setup(ctx), SETUP_TIMEOUT_S, f"{name}.setup()")
        ctx.start_ns = time.monotonic_ns() + int(START_MARGIN_S * 1e9)
        ctx.measure_start_ns = ctx.start_ns + int(scenario.warmup_s * 1e9)
        ctx.end_ns = ctx.measure_start_ns + int(scenario.duration_s * 1e9)
        budget = START_MARGIN_S + scenario.warmup_s + scenario.duration_s + PLAY_GRACE_S
        await _bounded(scenario.play(ctx), budget, f"{name}.play()")
        await ctx.sleep_until(ctx.end_ns)
        await ctx.wait_for(ctx.rec.complete, scenario.drain_s, "the drain")
        drained_ns = time.monotonic_ns()
        await _bounded(scenario.finish(ctx), FINISH_TIMEOUT_S, f"{name}.finish()")
    finally:
        await ctx.close()
    timings = {"start_ns": ctx.start_ns, "measure_start_ns": ctx.measure_start_ns, "end_ns": ctx.end_ns,
               "drained_ns": drained_ns, "cpu_s": _cpu_s() - cpu0, "wall_s": time.monotonic() - wall0}
    return ctx, timings
