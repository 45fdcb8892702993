"""Topic names for the lab's own hubs (WebSocket and SSE), checked without I/O.

A hub topic is a URL path tail: 1 to 200 characters of letters, digits and
``- _ . ~ /`` (so ``fleet/7/telemetry`` works, and nothing needs escaping).
"""

from __future__ import annotations

import re

__all__ = ["HUB_TOPIC_MAX", "SEND_ONLY", "hub_topic_problem", "check_hub_topic"]

HUB_TOPIC_MAX = 200
#: The WebSocket hub's query parameter for a connection that only sends (``?send_only=1``): it is relayed nothing.
SEND_ONLY = "send_only"
_HUB_TOPIC = re.compile(r"[A-Za-z0-9_.~/-]+")


def hub_topic_problem(topic: str) -> str | None:
    """Why ``topic`` is not a valid hub topic, or None if it is."""
    if not isinstance(topic, str):
        return f"topic must be a string, not {type(topic).__name__}"
    if not topic:
        return "topic is empty; use a name such as 'scores' or 'fleet/7'"
    if len(topic) > HUB_TOPIC_MAX:
        return f"topic is {len(topic)} characters long; the limit is {HUB_TOPIC_MAX}"
    if not _HUB_TOPIC.fullmatch(topic):
        bad = sorted({c for c in topic if not _HUB_TOPIC.fullmatch(c)})
        return f"topic {topic!r} has {''.join(bad)!r}; use letters, digits and - _ . ~ / only"
    return None


def check_hub_topic(topic: str) -> str:
    """Return ``topic`` if valid, else raise ValueError with the reason."""
    problem = hub_topic_problem(topic)
    if problem:
        raise ValueError(problem)
    return topic
