"""Helpers shared by the tests (fixtures live in conftest.py)."""

from __future__ import annotations

import os
import time

import psutil
import pytest

from labkit.brokers.registry import served_class

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_broker(kind: str) -> None:
    """Skip (locally) or fail (in CI) when broker ``kind`` cannot run on this machine."""
    reason = served_class(kind).unavailable_reason()
    if reason:
        if IN_CI:
            pytest.fail(f"{kind} is required in CI: {reason}")
        pytest.skip(f"{kind} cannot run here: {reason}")


def gone(pid: int, timeout: float = 15.0) -> bool:
    """True once ``pid`` no longer runs (a zombie counts as gone), polling up to ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
