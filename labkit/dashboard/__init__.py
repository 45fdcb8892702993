"""A live browser dashboard of a running scenario, served by the SSE hub.

* ``page.py`` / ``page.html``: ``GET /dashboard?topic=...`` on the SSE hub, a
  self-contained page that reads the topic with ``EventSource`` and draws a
  map of vehicles or flights and a latency sparkline;
* ``feed.py``: pure logic turning scenario messages into compact map and
  latency updates (batched, p50 per second);
* ``bridge.py``: :class:`Bridge`, subscribes to the scenario's messages
  (fleet: MQTT ``fleet/+/telemetry``; flights: SSE ``flights/LYS``) and
  republishes the updates on the hub topic the page reads;
* ``cli.py``: ``labkit dashboard --scenario fleet``.

Names load on first use: the SSE hub's process imports ``page`` only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .bridge import Bridge
    from .feed import SOURCES, Feed
    from .page import DEFAULT_TOPIC, page_url

_LAZY = {"Bridge": "bridge", "Feed": "feed", "SOURCES": "feed", "DEFAULT_TOPIC": "page", "page_url": "page"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'labkit.dashboard' has no attribute {name!r}")


__all__ = ["Bridge", "DEFAULT_TOPIC", "Feed", "SOURCES", "page_url"]
