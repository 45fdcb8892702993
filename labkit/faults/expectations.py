"""What each broker keeps across its own outage: the table the broker-outage tests and notebook check against.

Pure data and one lookup, no I/O.  Each row says, for a broker, the
protocol's reliable or plain settings (see :mod:`labkit.scenarios.outage`)
and how the broker went down, whether the messages parked for an absent
subscriber are still there when it comes back, and why: the documented
behaviour, or, where documentation is silent, what labkit observed (and
the tests re-check every run).

How it goes down: ``"none"`` (no outage: the baseline), ``"sigterm"`` (a
clean shutdown) or ``"sigkill"`` (a crash of the broker's whole process
group: only what is on disk survives).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError

__all__ = ["Expectation", "EXPECTATIONS", "expected_parked", "MOSQUITTO_PERSISTENCE", "mosquitto_persistence"]

#: Mosquitto settings that make it keep sessions and queued messages on disk: written at a clean shutdown,
#: and every ``autosave_interval`` seconds (set long, so a crash within a run loses what is not yet written).
MOSQUITTO_PERSISTENCE = {"persistence": "true", "autosave_interval": 3600, "autosave_on_changes": "false"}


def mosquitto_persistence(folder: str) -> dict[str, object]:
    """``extra`` settings for a Mosquitto broker that persists to ``folder`` (which must survive restarts)."""
    return {**MOSQUITTO_PERSISTENCE, "persistence_location": folder.rstrip("/") + "/"}


@dataclass(frozen=True)
class Expectation:
    """Whether parked messages survive (``kept``) and the reason, with its source."""

    broker: str
    reliable: bool
    stop: str
    kept: bool
    why: str


def _rows() -> list[Expectation]:
    rows: list[Expectation] = []

    def add(broker: str, reliable: bool, stops: tuple[str, ...], kept: bool, why: str) -> None:
        rows.extend(Expectation(broker, reliable, stop, kept, why) for stop in stops)

    everyone = ("none", "sigterm", "sigkill")
    outages = ("sigterm", "sigkill")
    add("amqtt", True, ("none",), True,
        "MQTT 3.1.1 section 3.1.2.4: a session with clean_session=0 keeps QoS 1 and 2 messages for an absent client")
    add("amqtt", True, outages, False,
        "amqtt 0.12 keeps sessions in memory only: a restarted broker has none (observed; no persistence option)")
    add("mosquitto", True, ("none",), True, "MQTT 3.1.1 section 3.1.2.4, as for any broker")
    add("mosquitto", True, ("sigterm",), True,
        "with persistence true, mosquitto writes its database when it shuts down (mosquitto.conf(5), 'persistence')")
    add("mosquitto", True, ("sigkill",), False,
        "a crash loses what changed since the last autosave (autosave_interval, here 3600 s): mosquitto.conf(5)")
    for broker in ("amqtt", "mosquitto"):
        add(broker, False, everyone, False,
            "clean_session=1 ends the session, and its subscriptions, when the client leaves (MQTT 3.1.1 3.1.2.4)")
    add("rabbitmq", True, everyone, True,
        "a durable queue survives a restart and a persistent message is on disk before its confirm is sent "
        "(RabbitMQ docs: Reliability Guide, Publisher Confirms)")
    add("rabbitmq", False, ("none",), True, "a named queue that is not auto-delete keeps its messages while the "
        "broker runs, durable or not")
    add("rabbitmq", False, outages, False, "a non-durable queue is deleted when the broker stops (RabbitMQ docs: "
        "Queues, durability)")
    add("sse", True, ("none",), True,
        "the hub replays what it still buffers after the Last-Event-ID a returning client sends (HTML, "
        "server-sent events, 'Last-Event-ID')")
    add("sse", True, outages, False, "the hub's replay buffer is in memory: a restarted hub starts with none, and "
        "its event ids start again")
    add("sse", False, everyone, False, "a client that reconnects without Last-Event-ID gets live events only")
    add("ws", True, everyone, False, "the WebSocket hub relays to whoever is connected and stores nothing: "
        "WebSocket has no delivery guarantee beyond the open connection (RFC 6455)")
    add("ws", False, everyone, False, "the same: nothing is stored for an absent client")
    return rows


#: Every (broker, reliable, stop) case.
EXPECTATIONS: tuple[Expectation, ...] = tuple(_rows())

_BROKERS = sorted({row.broker for row in EXPECTATIONS})
_STOPS = ("none", "sigterm", "sigkill")


def expected_parked(broker: str, reliable: bool, stop: str) -> Expectation:
    """The row for ``broker`` (amqtt, mosquitto, rabbitmq, sse, ws), ``reliable`` and ``stop``."""
    if broker not in _BROKERS:
        raise ConfigError(f"broker={broker!r} must be one of {', '.join(_BROKERS)}")
    if stop not in _STOPS:
        raise ConfigError(f"stop={stop!r} must be one of {', '.join(_STOPS)}")
    if not isinstance(reliable, bool):
        raise ConfigError(f"reliable={reliable!r} must be True or False")
    for row in EXPECTATIONS:
        if (row.broker, row.reliable, row.stop) == (broker, reliable, stop):
            return row
    raise AssertionError("the table covers every case")  # pragma: no cover
