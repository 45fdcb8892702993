"""Protocol options that move numbers: which exist, where each goes, their defaults.

Every run records every option in this table, set or not, so a chart can
group by it and two runs can be compared knowing what differed.  Pure logic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

__all__ = ["OptionSpec", "OPTIONS", "PROTOCOLS", "resolve_options", "implementation_label"]


@dataclass(frozen=True)
class OptionSpec:
    """One option: where it is applied (client, publish, subscribe, url), allowed values, default."""

    name: str
    where: tuple[str, ...]
    choices: tuple[Any, ...] | None
    default: Any
    help: str


def _spec(name: str, where: str, choices: tuple[Any, ...] | None, default: Any, help: str) -> OptionSpec:
    return OptionSpec(name, tuple(where.split("+")), choices, default, help)


#: protocol -> option name -> spec.  "tcp" is the raw asyncio TCP baseline.
OPTIONS: dict[str, dict[str, OptionSpec]] = {
    "mqtt": {s.name: s for s in (
        _spec("qos", "publish+subscribe", (0, 1, 2), 0, "MQTT QoS level of publishes and subscriptions"),
        _spec("transport", "url", ("tcp", "ws"), "tcp", "MQTT over TCP or over WebSockets"),
        _spec("max_inflight", "client", None, 100, "unacknowledged QoS 1/2 publishes allowed at once"),
    )},
    "amqp": {s.name: s for s in (
        _spec("confirms", "client", (False, True), False, "publisher confirms"),
        _spec("persistent", "publish", (False, True), False, "persistent messages (delivery mode 2)"),
        _spec("prefetch", "subscribe", None, 100, "consumer prefetch (unacknowledged deliveries)"),
        _spec("ack", "subscribe", ("auto", "none"), "auto",
              "consumer acknowledgements: one per message ('auto'), or none (the broker forgets a message once sent)"),
        _spec("max_inflight", "client", None, 100, "unconfirmed publishes allowed at once"),
    )},
    "ws": {s.name: s for s in (
        _spec("compression", "client", (None, "deflate"), None, "per-message deflate"),
    )},
    "sse": {s.name: s for s in (
        _spec("ingest", "client", ("stream", "post"), "stream", "publisher path into the hub"),
        _spec("max_inflight", "client", None, 100, "POSTs in flight at once (ingest='post')"),
    )},
    "amqp1": {s.name: s for s in (
        _spec("settle", "client", ("unsettled", "presettled"), "unsettled",
              "AMQP 1.0 settlement: unsettled (at-least-once, the broker accepts each) or presettled (at-most-once)"),
        _spec("credit", "client", None, 100, "link credit each receiver grants (messages)"),
        _spec("max_inflight", "client", None, 100, "unsettled publishes allowed at once"),
    )},
    "tcp": {},
}

PROTOCOLS: tuple[str, ...] = tuple(OPTIONS)


def resolve_options(protocol: str, options: dict[str, Any] | None) -> dict[str, Any]:
    """Every option of ``protocol`` with its value (given or default); ConfigError on a bad one."""
    if protocol not in OPTIONS:
        raise ConfigError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}")
    specs = OPTIONS[protocol]
    given = dict(options or {})
    for name, value in given.items():
        if name not in specs:
            owners = [p for p, s in OPTIONS.items() if name in s]
            valid = ", ".join(specs) or "no options"
            if owners:
                raise ConfigError(f"option {name}={value!r} does not apply to {protocol} (it is for "
                                  f"{', '.join(owners)}); {protocol} takes {valid}")
            raise ConfigError(f"unknown option {name!r} for {protocol}; {protocol} takes {valid}")
        spec = specs[name]
        if spec.choices is not None and value not in spec.choices:
            raise ConfigError(f"option {name}={value!r} for {protocol} must be one of {list(spec.choices)}")
        if spec.choices is None and (not isinstance(value, int) or isinstance(value, bool) or value < 0):
            raise ConfigError(f"option {name}={value!r} for {protocol} must be a whole number >= 0")
    return {name: given.get(name, spec.default) for name, spec in specs.items()}


def split_options(protocol: str, resolved: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Options grouped by where they apply: client, publish, subscribe, url."""
    out: dict[str, dict[str, Any]] = {"client": {}, "publish": {}, "subscribe": {}, "url": {}}
    for name, value in resolved.items():
        for where in OPTIONS[protocol][name].where:
            out[where][name] = value
    return out


def implementation_label(protocol: str, broker: str, resolved: dict[str, Any]) -> str:
    """The series label charts use: ``mqtt/amqtt``, ``mqtt-ws/amqtt``, ``sse/stream``..."""
    if protocol == "mqtt" and resolved.get("transport") == "ws":
        return f"mqtt-ws/{broker}"
    if protocol == "sse":
        return f"sse/{resolved.get('ingest', 'stream')}"
    return f"{protocol}/{broker}"
