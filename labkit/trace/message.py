"""One message, every frame: a publisher and a subscriber talk through a :class:`Capture`.

:func:`trace_message` connects both through the recording relay, subscribes,
publishes ONE message, waits (bounded) until it is received and its
handshakes are over, closes both, and decodes what crossed the sockets with
labkit's own wire code (:mod:`labkit.trace.decode`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from typing import Any

import pandas as pd

from ..errors import ConfigError, LabkitTimeout
from ..protocols import client as make_client
from .capture import UP, Capture
from .decode import ARROWS, COLUMNS, PROTOCOLS, decode_chunks

log = logging.getLogger(__name__)

__all__ = ["trace_message", "PHASES"]

#: The phases of a trace, in order.
PHASES = ("connect", "subscribe", "message", "close")


def _options(protocol: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any], str]:
    """(client options, subscribe options, publish options, the frame that ends the subscriber's handshake)."""
    if protocol == "mqtt":
        qos = options.pop("qos", 0)
        if qos not in (0, 1, 2):
            raise ConfigError(f"qos={qos!r} must be 0, 1 or 2")
        return {}, {"qos": qos}, {"qos": qos}, {0: "", 1: "PUBACK", 2: "PUBCOMP"}[qos]
    if protocol == "amqp":
        confirms = options.pop("confirms", True)
        if not isinstance(confirms, bool):
            raise ConfigError(f"confirms={confirms!r} must be True or False")
        return {"confirms": confirms}, {}, {}, "basic.ack"  # labkit's subscriber acks each delivery
    if protocol == "ws":
        return {}, {}, {"text": True}, ""  # a text frame reads better in a table than a binary one
    return {}, {}, {}, ""


def _seen(cap: Capture, protocol: str, frame: str) -> bool:
    """True once the subscriber sent ``frame`` to the broker during the message phase."""
    rows = decode_chunks(protocol, [c for c in cap.chunks if c.role == "subscriber" and c.direction == UP],
                         cap.marks)
    return any(r["frame"] == frame and r["phase"] == "message" for r in rows)


async def trace_message(protocol: str, lab: Any, **options: Any) -> pd.DataFrame:
    """Every frame of one message through ``lab``'s broker for ``protocol``, one row each.

    ``protocol``: ``mqtt``, ``amqp``, ``ws`` or ``sse``.  Options: ``qos``
    (0, 1 or 2; MQTT), ``confirms`` (True; AMQP publisher confirms),
    ``payload`` (bytes, default ``b"hello, frames"``), ``topic`` (default a
    fresh ``trace/...``), ``timeout`` (s, default 10, for every wait).

    Columns: ``t_ms`` (ms since the first captured byte), ``phase``
    (``connect``, ``subscribe``, ``message``, ``close``), ``connection``
    (``publisher``/``subscriber``), ``conn`` (relayed connection number),
    ``direction`` (``→ broker``/``← broker``), ``frame``, ``bytes`` (on the
    wire) and ``detail``.  ``df.attrs`` holds ``protocol``, the options,
    ``captured_bytes`` per (connection, direction) and ``truncated``.
    """
    if protocol not in PROTOCOLS:
        raise ConfigError(f"protocol={protocol!r} cannot be traced; choose one of {', '.join(PROTOCOLS)}")
    options = dict(options)
    payload = options.pop("payload", b"hello, frames")
    topic = options.pop("topic", None) or f"trace/{uuid.uuid4().hex[:8]}"
    timeout = float(options.pop("timeout", 10.0))
    if not isinstance(payload, bytes):
        raise ConfigError(f"payload={payload!r} must be bytes, such as b'hello'")
    client_opts, sub_opts, pub_opts, last_frame = _options(protocol, options)
    if options:
        raise ConfigError(f"unknown option(s) {sorted(options)} for a {protocol} trace; use qos= (mqtt), "
                          "confirms= (amqp), payload=, topic=, timeout=")
    shown = {"mqtt": {"qos": sub_opts.get("qos")},
             "amqp": {"confirms": client_opts.get("confirms")}}.get(protocol, {})
    url = lab.url(protocol)
    prefix = lab.prefix(protocol)
    cap = Capture.for_url(url)
    async with cap:
        pub = make_client(protocol, cap.url_for("publisher", url), prefix=prefix, timeout=timeout, **client_opts)
        sub = make_client(protocol, cap.url_for("subscriber", url), prefix=prefix, timeout=timeout)
        try:
            cap.mark("connect")
            await sub.connect()
            await pub.connect()
            cap.mark("subscribe")
            subscription = await sub.subscribe(topic, **sub_opts)
            cap.mark("message")
            ack = await pub.publish(topic, payload, **pub_opts)
            await subscription.get(timeout)
            await ack.wait(timeout)
            if last_frame:
                await cap.wait_until(lambda: _seen(cap, protocol, last_frame), timeout,
                                     f"the subscriber's {last_frame}")
            cap.mark("close")
        finally:
            for c in (pub, sub):
                await _close(c, timeout)
        with contextlib.suppress(LabkitTimeout):  # a connection a library keeps open is cut by stop()
            await cap.wait_until(lambda: cap.open_connections == 0, timeout, "every connection closed")
    rows = decode_chunks(protocol, cap.chunks, cap.marks)
    df = pd.DataFrame(rows, columns=COLUMNS)
    captured: dict[str, int] = {}
    for c in cap.chunks:
        key = f"{c.role} {ARROWS[c.direction]}"
        captured[key] = captured.get(key, 0) + len(c.data)
    df.attrs.update(protocol=protocol, options=shown, topic=topic, payload_bytes=len(payload),
                    captured_bytes=captured, truncated=cap.truncated)
    return df


async def _close(client: Any, timeout: float) -> None:
    """Close ``client`` within ``timeout`` s; a failure to close is logged, never raised (the capture cuts it)."""
    try:
        async with asyncio.timeout(timeout):
            await client.close()
    except Exception as exc:  # noqa: BLE001 - the trace is over; a slow or failed close is only logged
        log.warning("closing %r failed (%r); the capture cuts its connection", client, exc)
