"""Every notebook stops the brokers it started: checked after each notebook's run under nbmake.

The notebook's kernel is shut down when its item ends; a lab the notebook forgot to close would then
still be stopped by its brokers' parent-death watch, a second or so later.  So the check waits a little
(bounded) for broker processes that appeared during the run to go, and fails if any stays; the static
half (each ``Lab(...)`` of a notebook has its ``.close()`` cell) is in tests/test_notebooks.py.
"""

from __future__ import annotations

import time

import psutil
import pytest

#: How long broker processes started by a notebook may take to go after its kernel stops (s).
GONE_WITHIN_S = 20.0
_MARKS = ("labkit.brokers.child", "mosquitto", "beam.smp")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _brokers() -> set[int]:
    found: set[int] = set()
    for proc in psutil.process_iter(["pid", "cmdline"]):
        line = " ".join(proc.info["cmdline"] or [])
        if any(mark in line for mark in _MARKS):
            found.add(proc.info["pid"])
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    before = _brokers()
    outcome = yield
    deadline = time.monotonic() + GONE_WITHIN_S
    left = _brokers() - before
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = {pid for pid in left if _running(pid)}
    if left and outcome.excinfo is None:
        pytest.fail(f"{item.name} left broker processes running (pids {sorted(left)}); close every Lab it starts",
                    False)
