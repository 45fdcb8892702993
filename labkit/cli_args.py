"""Command-line values and scenario knob flags, shared by ``labkit run --scenario`` and ``labkit dashboard``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

__all__ = ["value", "knob_flags"]


def value(text: str) -> Any:
    """A value from the command line: true/false/none, a whole number, a number, or text."""
    low = text.lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def knob_flags(extra: Sequence[str]) -> dict[str, Any]:
    """``["--vehicles", "20", "--rate-hz=2"]`` -> ``{"vehicles": 20, "rate_hz": 2}``; ConfigError otherwise."""
    knobs: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        flag = extra[i]
        if not flag.startswith("--") or len(flag) < 3:
            raise ConfigError(f"unexpected argument {flag!r}; scenario knobs look like --vehicles 20")
        name, eq, raw = flag[2:].partition("=")
        if not eq:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise ConfigError(f"{flag} needs a value, e.g. {flag} 10")
            raw = extra[i + 1]
            i += 1
        knobs[name.replace("-", "_")] = value(raw)
        i += 1
    return knobs
