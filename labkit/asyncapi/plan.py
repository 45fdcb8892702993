"""The plan of an AsyncAPI workload: flows, publishers and subscribers, checked before anything starts.

Pure: from a parsed document (:class:`~labkit.asyncapi.document.ApiSpec`) and
the workload's knobs to a :class:`Plan` (one :class:`FlowPlan` per send
operation's channel instances, one :class:`ReceiverPlan` per subscriber),
raising :class:`~labkit.asyncapi.document.AsyncAPIError` with the JSON pointer
of whatever the lab cannot run.  :mod:`labkit.asyncapi.workload` runs it.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any

from ..scenarios.stamp import STAMP_KEY
from ..wire.amqp import routing_key_problem
from ..wire.mqtt_topics import validate_topic
from ..wire.topics import hub_topic_problem
from .document import ApiSpec, AsyncAPIError, ChannelSpec, MessageSpec, OperationSpec
from .examples import examples, validator

__all__ = ["plan", "Plan", "FlowPlan", "ReceiverPlan", "ENVELOPE_KEY", "MAX_SENDERS", "CHECK_SAMPLE"]

#: Member of the envelope that holds the payload when the stamp cannot travel inside it.
ENVELOPE_KEY = "payload"
#: Most publishers (channel instances over all send operations) one document may make.
MAX_SENDERS = 200
#: Received payloads each subscriber checks against its message schemas.
CHECK_SAMPLE = 20
_DUMMY_STAMP = {"flow": "f", "src": 0, "seq": 0, "due_ns": 0, "sent_ns": 0}


@dataclass
class FlowPlan:
    """One measured flow: who publishes where, with which options and payloads."""

    name: str
    operation: str
    channel: str
    protocol: str
    address: str
    senders: list[str]  # one concrete topic (routing key, hub topic, queue) per publisher
    receivers: list[str]
    client: dict[str, Any]
    publish: dict[str, Any]
    bodies: list[list[Any]]  # per message: a pool of stamped-ready bodies
    stamp: str  # "inline", "envelope" or "mixed"
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class ReceiverPlan:
    """One subscriber: the topics (or filters) it subscribes to and the schemas it checks a sample against."""

    name: str
    operation: str | None
    channel: str
    protocol: str
    topics: list[str]
    client: dict[str, Any]
    subscribe: dict[str, Any]
    checks: list[tuple[Any, str]]  # (payload schema, its pointer) of each message it may receive


@dataclass
class Plan:
    spec: ApiSpec
    flows: list[FlowPlan]
    receivers: list[ReceiverPlan]

    @property
    def protocols(self) -> tuple[str, ...]:
        return tuple(sorted({f.protocol for f in self.flows}))


def _flow_name(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "flow"
    name = base
    for i in itertools.count(2):
        if name not in taken:
            break
        name = f"{base}-{i}"
    taken.add(name)
    return name


def _values(name: str, param: dict[str, Any], instances: int) -> list[str]:
    """``instances`` values for a channel parameter: its enum, examples or default first, then made-up ones."""
    given = [str(v) for v in param.get("enum") or []]
    if given:
        return given[:instances]
    given = [str(v) for v in param.get("examples") or []]
    if "default" in param:
        given.insert(0, str(param["default"]))
    given = list(dict.fromkeys(given))
    made = (f"{name}-{i}" for i in itertools.count(1))
    while len(given) < instances:
        given.append(next(made))
    return given[:instances]


def _fill(address: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        address = address.replace("{" + name + "}", value)
    return address


def _wildcard(address: str, separator: str, wild: str) -> str | None:
    """The address with each placeholder as ``wild``, when every placeholder is a whole level; else None."""
    levels = address.split(separator)
    if any("{" in lv and not re.fullmatch(r"\{[^{}]+\}", lv) for lv in levels):
        return None
    return separator.join(wild if lv.startswith("{") else lv for lv in levels)


def _instances(channel: ChannelSpec, instances: int) -> list[str]:
    names = list(channel.parameters)
    choices = [_values(n, channel.parameters[n], instances) for n in names]
    topics = [_fill(channel.address, dict(zip(names, combo))) for combo in itertools.product(*choices)]
    if channel.protocol == "amqp" and not names:
        queue = _amqp(channel)["queue"]
        topics = [queue] if queue else topics  # is: queue with a queue name: publish to that queue
    problem_at = f"{channel.pointer}/address"
    for topic in topics:
        _check_topic(channel, topic, problem_at)
    return topics


def _amqp(channel: ChannelSpec) -> dict[str, Any]:
    binding = channel.bindings.get("amqp", {}) or {}
    kind = binding.get("is", "routingKey")
    if kind not in ("routingKey", "queue"):
        raise AsyncAPIError(f"{channel.pointer}/bindings/amqp/is", f"{kind!r} must be 'routingKey' or 'queue'")
    exchange = binding.get("exchange", {}) or {}
    ex_type = exchange.get("type", "topic")
    if kind == "queue" or ex_type == "default":
        return {"is": "queue", "exchange": "", "exchange_type": "direct",
                "queue": (binding.get("queue", {}) or {}).get("name")}
    if ex_type not in ("topic", "direct", "fanout"):
        raise AsyncAPIError(f"{channel.pointer}/bindings/amqp/exchange/type", f"exchange type {ex_type!r} is not "
                            "supported by the import; use topic, direct, fanout or default")
    return {"is": "routingKey", "exchange": exchange.get("name") or f"asyncapi.{ex_type}", "exchange_type": ex_type,
            "queue": None}


def _check_topic(channel: ChannelSpec, topic: str, at: str) -> None:
    if channel.protocol == "mqtt":
        try:
            validate_topic(topic)
        except ValueError as exc:
            raise AsyncAPIError(at, f"{topic!r} is not an MQTT topic name ({exc})") from None
    elif channel.protocol == "amqp":
        problem = routing_key_problem(topic)
        if problem:
            raise AsyncAPIError(at, problem)
    else:
        problem = hub_topic_problem(topic)
        if problem:
            raise AsyncAPIError(at, f"{problem} (the lab's {channel.protocol} hub topic)")


def _stamp_mode(check: Any, body: Any) -> str:
    if isinstance(body, dict) and STAMP_KEY not in body:
        return "inline" if check.is_valid({STAMP_KEY: _DUMMY_STAMP, **body}) else "envelope"
    return "envelope"


def _bodies(spec: ApiSpec, messages: list[MessageSpec], pool: int, seed: int, size: int) -> tuple[list[list[Any]], str]:
    out, modes = [], set()
    for i, m in enumerate(messages):
        values = examples(m.schema, pool, root=spec.root, at=m.schema_pointer, seed=seed + 7919 * i,
                          size_bytes=size or None)
        check = validator(m.schema, spec.root, m.schema_pointer)
        mode = _stamp_mode(check, values[0])
        modes.add(mode)
        out.append([v if mode == "inline" else {ENVELOPE_KEY: v} for v in values])
    return out, modes.pop() if len(modes) == 1 else "mixed"


def _publish_options(protocol: str, op: OperationSpec | None, channel: ChannelSpec) -> dict[str, Any]:
    b = (op.bindings if op is not None else {}).get({"sse": "http"}.get(protocol, protocol), {}) or {}
    at = f"{op.pointer}/bindings" if op is not None else channel.pointer
    if protocol == "mqtt":
        qos = b.get("qos", 0)
        if qos not in (0, 1, 2):
            raise AsyncAPIError(f"{at}/mqtt/qos", f"qos {qos!r} must be 0, 1 or 2")
        return {"qos": qos, "retain": bool(b.get("retain", False))}
    if protocol == "amqp":
        out: dict[str, Any] = {"persistent": b.get("deliveryMode", 1) == 2}
        if "priority" in b:
            out["priority"] = int(b["priority"])
        if "expiration" in b:
            out["expiration_ms"] = int(b["expiration"])
        if b.get("mandatory"):
            out["mandatory"] = True
        return out
    return {}


def _receiver(name: str, op: OperationSpec | None, channel: ChannelSpec, topics: list[str]) -> ReceiverPlan:
    proto = channel.protocol
    client: dict[str, Any] = {}
    sub: dict[str, Any] = {"idle_timeout": None}
    subscribe_to = list(topics)
    if proto == "mqtt":
        qos = (op.bindings.get("mqtt", {}) or {}).get("qos", 0) if op is not None else 0
        if qos not in (0, 1, 2):
            raise AsyncAPIError(f"{op.pointer}/bindings/mqtt/qos", f"qos {qos!r} must be 0, 1 or 2")
        sub["qos"] = qos
        wild = _wildcard(channel.address, "/", "+")
        subscribe_to = [wild] if wild and channel.parameters else subscribe_to
    elif proto == "amqp":
        amqp = _amqp(channel)
        client = {"exchange": amqp["exchange"], "exchange_type": amqp["exchange_type"]}
        ack = (op.bindings.get("amqp", {}) or {}).get("ack", True) if op is not None else True
        sub["ack"] = "auto" if ack else "none"
        if amqp["is"] == "queue":
            pass  # one consumer per queue: the topics are the queue names
        elif amqp["exchange_type"] == "fanout":
            subscribe_to = ["#"]
        elif amqp["exchange_type"] == "topic" and channel.parameters:
            wild = _wildcard(channel.address, ".", "*")
            subscribe_to = [wild] if wild else subscribe_to
    # It hears every message on its channel (a topic has no per-message filter), so any of them may arrive.
    return ReceiverPlan(name, op.id if op else None, channel.id, proto, subscribe_to, client, sub,
                        [(m.schema, m.schema_pointer) for m in channel.messages.values()])


def plan(spec: ApiSpec, *, rate: float, instances: int, payload_bytes: int, pool: int, seed: int) -> Plan:
    """Flows and subscribers for ``spec`` (pure; AsyncAPIError naming the place for anything unsupported)."""
    taken: set[str] = set()
    flows: list[FlowPlan] = []
    receivers: list[ReceiverPlan] = []
    by_channel: dict[str, list[OperationSpec]] = {}
    for op in spec.operations.values():
        by_channel.setdefault(op.channel.id, []).append(op)
    total = 0
    for channel_id, ops in by_channel.items():
        channel = spec.channels[channel_id]
        topics = _instances(channel, instances)
        sends = [op for op in ops if op.action == "send"]
        gets = [op for op in ops if op.action == "receive"]
        amqp = _amqp(channel) if channel.protocol == "amqp" else None
        if amqp and amqp["is"] == "queue" and len(gets) > 1:
            raise AsyncAPIError(gets[1].pointer, f"a second receive operation on queue channel {channel_id!r}: "
                                "consumers of one queue compete, so each would see only part of the messages; "
                                "keep one receive operation or bind a queue per consumer (is: routingKey)")
        names = [op.id for op in gets]
        if gets:
            carried = [m for op in gets for m in op.messages]
            receivers += [_receiver(op.id, op, channel, topics) for op in gets]
        else:
            names = [f"observe-{channel_id}"]
            carried = [m for op in sends for m in op.messages]
            receivers.append(_receiver(names[0], None, channel, topics))
        unique = list({m.pointer: m for m in carried}.values())
        producers = [(op, op.messages) for op in sends] or [(None, unique)]
        for op, messages in producers:
            total += len(topics)
            if total > MAX_SENDERS:
                raise AsyncAPIError(f"{channel.pointer}/parameters", f"{total} publishers (channel instances) "
                                    f"exceed {MAX_SENDERS}; lower instances= (now {instances})")
            flow_id = _flow_name(op.id if op else f"peer-{channel_id}", taken)
            bodies, mode = _bodies(spec, messages, pool, seed + len(flows) * 104729, payload_bytes)
            publish = _publish_options(channel.protocol, op if op else (gets[0] if gets else None), channel)
            client = {k: amqp[k] for k in ("exchange", "exchange_type")} if amqp else {}
            if channel.protocol == "sse":
                client["ingest"] = "stream"
            options = {**{k: v for k, v in publish.items() if isinstance(v, (bool, int, float, str))},
                       "stamp": mode, "rate_per_op": rate}
            flows.append(FlowPlan(flow_id, op.id if op else f"peer-{channel_id}", channel_id, channel.protocol,
                                  channel.address, topics, names, client, publish, bodies, mode, options))
    return Plan(spec, flows, receivers)
