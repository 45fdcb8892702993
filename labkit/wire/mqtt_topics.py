"""MQTT 3.1.1 topic names and filters (section 4.7), without I/O.

:func:`validate_topic` accepts a name to publish to, :func:`validate_filter` a
subscription filter, and :func:`topic_matches` says whether a filter covers a
topic.  Section numbers refer to the OASIS MQTT 3.1.1 standard.
"""

from __future__ import annotations

from ..errors import ConfigError

__all__ = ["topic_matches", "validate_topic", "validate_filter"]


def _check_text(value: str, what: str) -> bytes:
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string, not {type(value).__name__}")
    if not value:
        raise ConfigError(f"{what} is empty; MQTT needs at least one character (4.7.3), e.g. 'sensors/1'")
    if "\x00" in value:
        raise ConfigError(f"{what} {value!r} contains U+0000, which MQTT forbids (1.5.3); remove it")
    raw = value.encode("utf-8")
    if len(raw) > 0xFFFF:
        raise ConfigError(f"{what} is {len(raw)} bytes of UTF-8; MQTT's limit is 65,535 (1.5.3); shorten it")
    return raw


def validate_topic(topic: str) -> str:
    """Return ``topic`` if it is a valid topic name to publish to, else raise ConfigError."""
    _check_text(topic, "topic")
    if "+" in topic or "#" in topic:
        raise ConfigError(
            f"topic {topic!r} contains a wildcard; '+' and '#' are for subscriptions only (3.3.2.1): "
            "publish to a concrete topic such as 'sensors/1'"
        )
    return topic


def validate_filter(topic_filter: str) -> str:
    """Return ``topic_filter`` if it is a valid subscription filter, else raise ConfigError."""
    _check_text(topic_filter, "topic filter")
    levels = topic_filter.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            raise ConfigError(
                f"topic filter {topic_filter!r}: '#' must be a whole level and the last one (4.7.1.2), e.g. 'sensors/#'"
            )
        if "+" in level and level != "+":
            raise ConfigError(
                f"topic filter {topic_filter!r}: '+' must fill a whole level (4.7.1.3), e.g. 'sensors/+/temp'"
            )
    return topic_filter


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if ``topic`` matches ``topic_filter`` (4.7); both are assumed valid.

    ``#`` matches the parent level too (``a/#`` matches ``a``); a wildcard in
    the first level never matches a topic starting with ``$`` (4.7.2).
    """
    if topic_filter == topic:
        return True
    if topic[:1] == "$" and topic_filter[:1] in ("+", "#"):
        return False
    filter_levels = topic_filter.split("/")
    topic_levels = topic.split("/")
    for index, level in enumerate(filter_levels):
        if level == "#":
            return True
        if index >= len(topic_levels) or (level != "+" and level != topic_levels[index]):
            return False
    return len(filter_levels) == len(topic_levels)
