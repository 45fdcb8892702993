"""AMQP 0-9-1 and AMQP 1.0 on one RabbitMQ: what survives the crossing, measured.

:func:`interop_table` sends one probe message each way through the same
broker, with a set of properties, and reports per property what was sent,
what arrived, where it surfaced on the other side, and whether it survived.
Nothing is filtered: a property the broker drops or reshapes is a row too.

* 0-9-1 -> 1.0: aio-pika publishes to a fresh queue (default exchange); the
  ``amqp1`` client reads it from ``/amq/queue/NAME``.
:func:`consumer_crash` is the settlement experiment of notebook 03: a
consumer holding messages dies, and the next one counts what comes back.

* 1.0 -> 0-9-1: the ``amqp1`` client sends to ``/amq/queue/NAME``; aio-pika
  consumes it.  A second probe sends its body as an ``amqp-value`` section (a
  string) instead of a ``data`` section, to show what 0-9-1 then sees.

The queues are made with ``x-expires`` (60 s) so that nothing is left behind
even if a run is interrupted.
"""

from __future__ import annotations

import asyncio
import datetime
import uuid
from collections.abc import Callable
from typing import Any

import aio_pika
import pandas as pd

from ..errors import ConfigError, LabkitTimeout
from proton import Data, DataException

from .amqp1 import Amqp1Client
from .amqp1_checks import check_settle

__all__ = ["interop_table", "consumer_crash", "PROBE_BODY", "COLUMNS"]

#: The probe's body: binary on purpose (a zero byte, a 0xff byte).
PROBE_BODY = b"\x00\x01quote ACME 101.25\xff"
#: Columns of the table.
COLUMNS = ["direction", "property", "sent", "arrived", "arrived_as", "survived"]
QUEUE_EXPIRES_MS = 60_000
_STAMP = datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc)
_HEADERS_091 = {"symbol": "ACME", "qty": 42, "price": 101.25, "urgent": True, "when": _STAMP,
                "legs": [1, 2], "nested": {"venue": "XNYS"}}
_PROPS_10 = {"symbol": "ACME", "qty": 42, "price": 101.25, "urgent": True, "raw": b"\x00\x01", "missing": None}


def _urls(lab_or_urls: Any) -> tuple[str, str]:
    if isinstance(lab_or_urls, dict):
        urls = lab_or_urls
    elif hasattr(lab_or_urls, "urls"):
        urls = dict(lab_or_urls.urls)
    else:
        raise ConfigError(f"lab_or_urls={lab_or_urls!r} must be a Lab or a dict with 'amqp' and 'amqp1' URLs")
    missing = [key for key in ("amqp", "amqp1") if not urls.get(key)]
    if missing:
        raise ConfigError(f"interop needs both AMQP URLs on one broker; missing {missing}: start the lab with "
                          "'amqp' (RabbitMQ with its rabbitmq_amqp1_0 plugin) or pass both URLs")
    return urls["amqp"], urls["amqp1"]


def _plain(value: Any) -> Any:
    """A value as a table cell: Proton's symbol/memoryview and aio-pika's types made plain and comparable."""
    if isinstance(value, memoryview | bytearray):
        return bytes(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if type(value).__name__ in ("symbol", "char"):
        return str(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    return value


def _row(direction: str, name: str, sent: Any, arrived: Any, where: str,
         same: Callable[[Any, Any], bool] | None = None) -> dict[str, Any]:
    sent, arrived = _plain(sent), _plain(arrived)
    survived = (same or (lambda a, b: a == b and type(a) is type(b)))(sent, arrived)
    return {"direction": direction, "property": name, "sent": repr(sent), "arrived": repr(arrived),
            "arrived_as": where, "survived": bool(survived)}


async def _take(queue: aio_pika.abc.AbstractQueue, count: int,
                timeout: float) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The next ``count`` messages of ``queue``, in order, within ``timeout`` s."""
    arrived: asyncio.Queue[aio_pika.abc.AbstractIncomingMessage] = asyncio.Queue()

    async def on_message(message: aio_pika.abc.AbstractIncomingMessage) -> None:
        arrived.put_nowait(message)

    tag = await queue.consume(on_message, no_ack=True, timeout=timeout)
    try:
        async with asyncio.timeout(timeout):
            return [await arrived.get() for _ in range(count)]
    except TimeoutError:
        raise LabkitTimeout(f"{arrived.qsize()} of {count} interop probes arrived on queue {queue.name!r} within "
                            f"{timeout:g} s") from None
    finally:
        await queue.cancel(tag, timeout=timeout)


async def _to_amqp1(channel: aio_pika.abc.AbstractChannel, amqp1_url: str, timeout: float) -> list[dict]:
    d = "0-9-1 -> 1.0"
    queue = await channel.declare_queue(f"labkit-interop-{uuid.uuid4().hex[:8]}", auto_delete=False,
                                        arguments={"x-expires": QUEUE_EXPIRES_MS}, timeout=timeout)
    stamp = _STAMP
    sent = aio_pika.Message(PROBE_BODY, content_type="application/octet-stream", content_encoding="identity",
                            correlation_id="corr-42", message_id="msg-42", reply_to="replies", priority=7,
                            expiration=60, delivery_mode=aio_pika.DeliveryMode.PERSISTENT, timestamp=stamp,
                            type="quote", app_id="labkit", user_id="guest", headers=dict(_HEADERS_091))
    try:  # the 1.0 client is gone before the queue is deleted (RabbitMQ 3.10 drops a 1.0 connection otherwise)
        async with Amqp1Client(amqp1_url, timeout=timeout) as amqp1:
            sub = await amqp1.subscribe(f"/amq/queue/{queue.name}")
            await channel.default_exchange.publish(sent, routing_key=queue.name, timeout=timeout)
            got = await sub.get(timeout)
    finally:
        await queue.delete(if_unused=False, if_empty=False, timeout=timeout)
    p = got.properties
    heads = p["headers"]
    notes = {str(k): v for k, v in (p["annotations"] or {}).items()}
    near = lambda a, b: isinstance(b, int | float) and abs(a - b) < 1.0  # noqa: E731 - seconds vs s
    rows = [
        _row(d, "body", PROBE_BODY, got.payload, "body (data section)"),
        _row(d, "content_type", sent.content_type, p["content_type"], "properties.content-type"),
        _row(d, "content_encoding", sent.content_encoding, p["content_encoding"], "properties.content-encoding"),
        _row(d, "correlation_id", sent.correlation_id, p["correlation_id"], "properties.correlation-id"),
        _row(d, "message_id", sent.message_id, p["message_id"], "properties.message-id"),
        _row(d, "reply_to", sent.reply_to, p["reply_to"], "properties.reply-to (as a 1.0 address)"),
        _row(d, "routing key", queue.name, p["subject"], "properties.subject"),
        _row(d, "user_id", b"guest", p["user_id"], "properties.user-id (binary in 1.0)"),
        _row(d, "priority", 7, p["priority"], "header.priority"),
        _row(d, "expiration (ms)", 60_000.0, p["ttl_ms"], "header.ttl (ms)",
             lambda a, b: isinstance(b, float) and abs(a - b) < 1.0),
        _row(d, "persistent (delivery_mode 2)", True, p["durable"], "header.durable"),
        _row(d, "timestamp (s)", stamp.timestamp(), p["creation_time"], "properties.creation-time (s)", near),
        _row(d, "type", "quote", notes.get("x-basic-type", heads.get("x-basic-type")),
             "message annotation x-basic-type" if "x-basic-type" in notes else "(not found)"),
        _row(d, "app_id", "labkit", notes.get("x-basic-app-id", heads.get("x-basic-app-id")),
             "message annotation x-basic-app-id" if "x-basic-app-id" in notes else "(not found)"),
    ]
    for key, value in _HEADERS_091.items():
        rows.append(_row(d, f"header {key} ({type(value).__name__})", value, heads.get(key),
                         "application-properties" if key in heads else "(dropped)"))
    return rows


async def _from_amqp1(channel: aio_pika.abc.AbstractChannel, amqp1_url: str, timeout: float) -> list[dict]:
    queue = await channel.declare_queue(f"labkit-interop-{uuid.uuid4().hex[:8]}", auto_delete=False,
                                        arguments={"x-expires": QUEUE_EXPIRES_MS}, timeout=timeout)
    address = f"/amq/queue/{queue.name}"
    try:
        async with Amqp1Client(amqp1_url, timeout=timeout) as amqp1:
            got, value = await _send_both(amqp1, address, queue, timeout)
    finally:
        await queue.delete(if_unused=False, if_empty=False, timeout=timeout)
    return _rows_from_amqp1(got, value)


async def _send_both(amqp1: Amqp1Client, address: str, queue: aio_pika.abc.AbstractQueue,
                     timeout: float) -> list[aio_pika.abc.AbstractIncomingMessage]:
    """The probe with every property, then a body sent as an amqp-value (a string); both as 0-9-1 received them."""
    ack = await amqp1.publish(address, PROBE_BODY, content_type="application/octet-stream",
                              correlation_id="corr-42", message_id="msg-42", reply_to="replies", priority=7,
                              expiration_ms=60_000, persistent=True, subject="quotes",
                              headers=dict(_PROPS_10), annotations={"x-labkit-note": "annotated"})
    await ack.wait(timeout)
    value_ack = await amqp1.publish(address, b"", body_value="hello")
    await value_ack.wait(timeout)
    return await _take(queue, 2, timeout)


def _section(heads: dict[str, Any], key: str) -> Any:
    """A 1.0 section RabbitMQ kept, encoded, in a 0-9-1 header (``x-amqp-1.0-...``), decoded; None if absent."""
    raw = heads.get(key)
    if isinstance(raw, str):
        raw = raw.encode("utf-8")
    if not isinstance(raw, bytes):
        return None
    data = Data()
    try:
        data.decode(raw)
        data.rewind()
        data.next()
        value = data.get_object()
    except DataException:
        return None
    return _plain(getattr(value, "value", value))


def _rows_from_amqp1(got: aio_pika.abc.AbstractIncomingMessage,
                     as_value: aio_pika.abc.AbstractIncomingMessage) -> list[dict]:
    d = "1.0 -> 0-9-1"
    heads = dict(got.headers or {})
    kept = _section(heads, "x-amqp-1.0-properties") or []  # message-id, user-id, to, subject, reply-to...
    app = _section(heads, "x-amqp-1.0-app-properties") or {}
    notes = _section(heads, "x-amqp-1.0-message-annotations") or {}
    encoded = "only inside headers[{!r}] (the 1.0 section, still encoded)"
    rows = [
        _row(d, "body", PROBE_BODY, got.body, "body"),
        _row(d, "content_type", "application/octet-stream", got.content_type, "content_type"),
        _row(d, "correlation_id", "corr-42", got.correlation_id, "correlation_id"),
        _row(d, "message_id", "msg-42", got.message_id, "message_id") if got.message_id or not kept else
        _row(d, "message_id", "msg-42", kept[0], encoded.format("x-amqp-1.0-properties"), lambda a, b: False),
        _row(d, "reply_to", "replies", got.reply_to, "reply_to"),
        _row(d, "priority", 7, got.priority, "priority"),
        _row(d, "ttl (ms)", "60000", got.expiration if got.expiration is None else str(int(got.expiration * 1000)),
             "expiration (ms, a string in 0-9-1)"),
        _row(d, "durable", 2, int(got.delivery_mode) if got.delivery_mode is not None else None, "delivery_mode"),
        _row(d, "subject", "quotes", kept[3] if len(kept) > 3 else None,
             encoded.format("x-amqp-1.0-properties") if len(kept) > 3 else "(dropped)", lambda a, b: False),
        _row(d, "message annotation x-labkit-note", "annotated", heads.get("x-labkit-note", notes.get("x-labkit-note")),
             "headers['x-labkit-note']" if "x-labkit-note" in heads else
             encoded.format("x-amqp-1.0-message-annotations") if "x-labkit-note" in notes else "(dropped)",
             lambda a, b: "x-labkit-note" in heads and a == b),
    ]
    for key, sent in _PROPS_10.items():
        name = f"application property {key} ({type(sent).__name__})"
        if key in heads:
            rows.append(_row(d, name, sent, heads[key], f"headers[{key!r}]"))
        elif key in app:
            rows.append(_row(d, name, sent, app[key], encoded.format("x-amqp-1.0-app-properties"), lambda a, b: False))
        else:
            rows.append(_row(d, name, sent, None, "(dropped)"))
    rows.append(_row(d, "body as amqp-value 'hello'", b"hello", as_value.body,
                     f"body (type={as_value.type!r}: the encoded 1.0 section)"))
    extra = sorted(set(heads) - set(_PROPS_10) - {"x-amqp-1.0-subject", "x-labkit-note"})
    if extra:
        rows.append(_row(d, "headers the broker added", [], extra, "headers", lambda a, b: True))
    return rows


async def interop_table(lab_or_urls: Any, timeout: float = 10.0) -> pd.DataFrame:
    """Probe messages 0-9-1 -> 1.0 and 1.0 -> 0-9-1 on one RabbitMQ; one row per property and direction.

    ``lab_or_urls``: a started :class:`~labkit.lab.Lab` (with ``amqp`` and
    ``amqp1`` URLs) or a dict of both URLs.  Columns: ``direction``,
    ``property``, ``sent``, ``arrived`` (reprs), ``arrived_as`` (where the
    value surfaced), ``survived`` (equal value and type).  Every wait is
    bounded by ``timeout`` (s).
    """
    amqp_url, amqp1_url = _urls(lab_or_urls)
    rows: list[dict[str, Any]] = []
    connection = await asyncio.wait_for(aio_pika.connect(amqp_url, timeout=timeout), timeout)
    try:
        channel = await asyncio.wait_for(connection.channel(), timeout)
        rows += await _to_amqp1(channel, amqp1_url, timeout)
        rows += await _from_amqp1(channel, amqp1_url, timeout)
    finally:
        await asyncio.wait_for(connection.close(), timeout)
    return pd.DataFrame(rows, columns=COLUMNS)


#: Pause between two looks at a queue's consumers while the broker handles a dead connection (s).
POLL_S = 0.02


async def _until_no_consumer(channel: aio_pika.abc.AbstractChannel, queue: str, timeout: float) -> None:
    """Wait (bounded) until ``queue`` has no consumer: the broker has handled the dead one and requeued its messages."""
    for _ in range(int(timeout / POLL_S) + 1):
        declared = await channel.declare_queue(queue, passive=True, timeout=timeout)
        if declared.declaration_result.consumer_count == 0:
            return
        await asyncio.sleep(POLL_S)
    raise LabkitTimeout(f"queue {queue!r} still had a consumer {timeout:g} s after it died; is the broker overloaded?")


#: How long the crashing consumer lives after accepting its finished messages (s).
SETTLED_BEFORE_CRASH_S = 0.3


async def consumer_crash(lab_or_urls: Any, settle: str, held: int = 20, done: int = 5,
                         timeout: float = 10.0) -> dict[str, Any]:
    """A consumer takes ``held`` messages, finishes ``done`` of them, and dies (TCP dropped); count what survives.

    ``lab_or_urls``: a Lab or a dict with the ``amqp`` and ``amqp1`` URLs of one
    RabbitMQ (0-9-1 is used only to see when the broker has noticed the death).
    ``settle``: ``"unsettled"`` (the consumer accepts each message it
    finished) or ``"presettled"`` (the broker forgets each message once sent).
    A second consumer then reads the queue up to a marker published after the
    broker noticed.  Returns ``settle``, ``held``, ``done``, ``redelivered``
    (messages the second consumer got again), ``lost`` (``held - done -
    redelivered``), ``again`` (their payloads) and ``flagged`` (True when each
    carried the redelivered mark).  Every wait is bounded by ``timeout`` (s).
    """
    if isinstance(held, bool) or not isinstance(held, int) or not 1 <= held <= 1000:
        raise ConfigError(f"held={held!r} must be a whole number of messages from 1 to 1000")
    if isinstance(done, bool) or not isinstance(done, int) or not 0 <= done <= held:
        raise ConfigError(f"done={done!r} must be a whole number from 0 to held={held}")
    check_settle(settle)
    amqp_url, url = _urls(lab_or_urls)
    name = f"labkit-crash-{uuid.uuid4().hex[:8]}"
    queue = f"/queue/{name}"  # declared by the first attach (durable), deleted at the end
    connection = await asyncio.wait_for(aio_pika.connect(amqp_url, timeout=timeout), timeout)
    try:
        channel = await asyncio.wait_for(connection.channel(), timeout)
        async with Amqp1Client(url, timeout=timeout) as pub, Amqp1Client(url, timeout=timeout) as survivor:
            dying = Amqp1Client(url, timeout=timeout)
            await dying.connect()
            try:
                manual = {"ack": "manual"} if settle == "unsettled" else {}
                doomed = await dying.subscribe(queue, settle=settle, credit=held, **manual)
                acks = [await pub.publish(queue, b"m%04d" % i) for i in range(held)]
                await asyncio.gather(*(a.wait(timeout) for a in acks))
                taken = [await doomed.get(timeout) for _ in range(held)]
                for message in taken[:done]:
                    await message.ack()  # a no-op for pre-settled messages
                # The consumer dies a moment after finishing its last message: dropped at once, the
                # acceptances can reach RabbitMQ with the connection's end and be discarded with its session
                # (seen once: 4 of 5 handed out again).
                await asyncio.sleep(SETTLED_BEFORE_CRASH_S)
                await dying.abort()
            finally:
                await dying.close()
            await _until_no_consumer(channel, name, timeout)
            after = await survivor.subscribe(queue)
            await (await pub.publish(queue, b"marker")).wait(timeout)
            again = []
            for _ in range(held + 1):  # the marker comes after at most `held` requeued messages
                message = await after.get(timeout)
                if message.payload == b"marker":
                    break
                again.append(message)
            await after.close()
        await channel.queue_delete(name, timeout=timeout)
    finally:
        await asyncio.wait_for(connection.close(), timeout)
    return {"settle": settle, "held": held, "done": done, "redelivered": len(again),
            "lost": held - done - len(again), "again": sorted(m.payload for m in again),
            "flagged": all(m.redelivered for m in again)}
