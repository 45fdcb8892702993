"""Bytes on the wire per message, per protocol: the payload plus each protocol's framing (pure).

What labkit counts at the sockets (``wire_bytes_per_msg_sent`` /
``_received``: TCP payload bytes, so no TCP/IP headers) is rebuilt here
from the wire modules where labkit has them: an MQTT PUBLISH is encoded by
:mod:`labkit.wire.mqtt`, an SSE event by :mod:`labkit.wire.sse`, a relay
frame by :mod:`labkit.wire.frames`.  WebSocket framing follows RFC 6455
(2-byte header, +2 or +8 for long payloads, +4 for the client's mask).
AMQP 0-9-1 frames are counted field by field; the properties aio-pika
sends and its consumer tag are measured constants (a live run with 100 and
1,000-byte payloads read 102 and 148 bytes of overhead).  Polling sizes
(HTTP requests and answers of the SSE hub's ``/state`` and ``/poll``) are
built from the header lines aiohttp writes.

Links carry these bytes plus :data:`PACKET_OVERHEAD_BYTES` per message for
the TCP/IP headers when a bandwidth is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ..errors import ConfigError
from ..wire import frames
from ..wire.amqp1 import proton_transfer_bytes, rabbitmq_transfer_bytes
from ..wire.mqtt import Publish
from ..wire.sse import encode_event

__all__ = ["Framing", "framing", "PACKET_OVERHEAD_BYTES", "http_request_bytes", "http_answer_bytes",
           "poll_answer_body_bytes"]

#: IPv4 (20) + TCP (20) + TCP timestamps (12): added per message on a link with a bandwidth (bytes).
PACKET_OVERHEAD_BYTES = 52
#: AMQP: the frame header (type, channel, size: 7 bytes) and end octet (1), per frame.
_AMQP_FRAME = 8
#: AMQP: content header of a basic message without properties (class, weight, body size, flags).
_AMQP_CONTENT_HEADER = 14
#: AMQP: the properties aio-pika sets on a labkit publish (delivery mode, message id...), measured (bytes).
_AMQP_PROPERTIES = 35
#: AMQP: the consumer tag aio-pika's consumer gets, measured (bytes of the short string's text).
_AMQP_CONSUMER_TAG = 38  # "ctag1." and 32 hex digits
#: AMQP basic.ack / publisher confirm: one method frame with a delivery tag and a flag (bytes).
_AMQP_ACK = _AMQP_FRAME + 4 + 8 + 1
#: MQTT PUBACK / PUBREC / PUBREL / PUBCOMP (bytes).
_MQTT_ACK = 4
#: SSE: a chunk of a chunked HTTP body adds its hex length and two CRLFs.
_CHUNK_CRLFS = 4
#: Typical digits of an SSE event id in a run (ids count from 1 per topic).
_SSE_ID_DIGITS = 4
#: The exchange labkit's AMQP client publishes to.
_AMQP_EXCHANGE = "labkit"
#: AMQP 1.0: a delivery id typical of a run (ids from 256 on take 5 bytes, smaller ones 1-2).
_AMQP1_DELIVERY_ID = 1000


@dataclass(frozen=True)
class Framing:
    """Bytes on the wire for one message (bytes).

    ``up``: the packet a publisher writes per message (PUBLISH, frame, POST
    chunk...); ``down``: the packet a subscriber reads per copy;
    ``ack_up``: acknowledgement bytes the broker sends the publisher per
    message (PUBACK, or PUBREC + PUBCOMP, a confirm); ``ack_down``: what a
    subscriber sends back per copy; ``release``: QoS 2's PUBREL, sent once
    each way.  ``sent`` and ``received`` are what labkit's socket counters
    read per message on the publisher's and the subscriber's side.
    """

    up: int
    down: int
    ack_up: int = 0
    ack_down: int = 0
    release: int = 0

    @property
    def sent(self) -> int:
        return self.up + self.release

    @property
    def received(self) -> int:
        return self.down + self.release


def _chunked(body: int) -> int:
    return body + len(f"{body:x}") + _CHUNK_CRLFS


def _ws_frame(payload: int, masked: bool) -> int:
    header = 2 if payload < 126 else (4 if payload < 65536 else 10)
    return payload + header + (4 if masked else 0)


def _amqp_short(text: str) -> int:
    return 1 + len(text.encode("utf-8"))


def framing(protocol: str, payload_bytes: int, topic: str = "labkit/bench/0", *, qos: int = 0,
            confirms: bool = False, settle: str = "unsettled") -> Framing:
    """Bytes per message on the wire for ``protocol`` with a ``payload_bytes`` payload on ``topic``.

    ``qos``: MQTT QoS (1 adds a packet id and a PUBACK, 2 the PUBREC / PUBREL /
    PUBCOMP handshake); ``confirms``: AMQP publisher confirms; ``settle``: AMQP 1.0
    settlement (``"presettled"`` transfers carry one byte more).
    """
    if isinstance(payload_bytes, bool) or not isinstance(payload_bytes, int) or payload_bytes < 0:
        raise ConfigError(f"payload_bytes={payload_bytes!r} must be a whole number of bytes >= 0")
    body = b"x" * payload_bytes
    if protocol == "mqtt":
        if qos not in (0, 1, 2):
            raise ConfigError(f"qos={qos!r} must be 0, 1 or 2")
        packet = len(Publish(topic, body, qos=qos, packet_id=1 if qos else None).encode())
        acks = {0: 0, 1: _MQTT_ACK, 2: 2 * _MQTT_ACK}[qos]  # PUBACK; PUBREC + PUBCOMP
        return Framing(packet, packet, acks, acks, _MQTT_ACK if qos == 2 else 0)
    if protocol == "ws":
        return Framing(_ws_frame(payload_bytes, True), _ws_frame(payload_bytes, False))
    if protocol == "sse":
        up = _chunked(len(encode_event(body.decode())))
        down = _chunked(len(encode_event(body.decode(), id="9" * _SSE_ID_DIGITS)))
        return Framing(up, down)
    if protocol == "amqp":
        method = 4 + 2 + _amqp_short(_AMQP_EXCHANGE) + _amqp_short(topic) + 1
        header = _AMQP_CONTENT_HEADER + _AMQP_PROPERTIES
        up = 3 * _AMQP_FRAME + method + header + payload_bytes
        deliver = 4 + _amqp_short("x" * _AMQP_CONSUMER_TAG) + 8 + 1 + _amqp_short(_AMQP_EXCHANGE) + _amqp_short(topic)
        down = 3 * _AMQP_FRAME + deliver + header + payload_bytes
        return Framing(up, down, _AMQP_ACK if confirms else 0, _AMQP_ACK)
    if protocol == "amqp1":  # one transfer frame each way; RabbitMQ batches its dispositions, not counted
        up = proton_transfer_bytes(payload_bytes, _AMQP1_DELIVERY_ID, settled=settle == "presettled")
        return Framing(up, rabbitmq_transfer_bytes(payload_bytes, _AMQP1_DELIVERY_ID))
    if protocol == "tcp":
        size = payload_bytes + frames.overhead(topic)
        return Framing(size, size)
    raise ConfigError(f"unknown protocol {protocol!r}; choose one of mqtt, amqp, amqp1, ws, sse, tcp")


# ----------------------------------------------------------------------------------------------- polling

#: Header lines aiohttp's client sends with every GET (beside the request line and Host).
_REQUEST_HEADERS = ("Accept: */*", "Accept-Encoding: gzip, deflate", "User-Agent: Python/3.11 aiohttp/3.14")
#: Header lines of the hub's JSON answers (beside the status line, ETag and Content-Length).
_ANSWER_HEADERS = ("Content-Type: application/json; charset=utf-8", "Cache-Control: no-cache",
                   "Date: Sat, 28 Nov 2026 19:31:00 GMT", "Server: Python/3.11 aiohttp/3.14")


def http_request_bytes(path: str, etag: bool = True) -> int:
    """Bytes of one polling GET (request line, Host, If-None-Match when ``etag``, aiohttp's headers)."""
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1:40000", *_REQUEST_HEADERS]
    if etag:
        lines.append('If-None-Match: "1732822260-1234"')
    return len(("\r\n".join(lines) + "\r\n\r\n").encode())


def poll_answer_body_bytes(events: list[int], topic: str = "shop/products") -> int:
    """Bytes of a ``/state`` or ``/poll`` JSON body carrying events of the given data sizes (bytes each)."""
    body = {"topic": topic, "last_id": 1234, "events": [{"id": 1234, "data": "x" * n} for n in events],
            "more": False, "missed": 0}
    return len(json.dumps(body).encode())


def http_answer_bytes(body_bytes: int | None) -> int:
    """Bytes of the hub's answer: a JSON body of ``body_bytes``, or a bodiless ``304`` when None."""
    status = "HTTP/1.1 304 Not Modified" if body_bytes is None else "HTTP/1.1 200 OK"
    lines = [status, 'ETag: "1732822260-1234"', *_ANSWER_HEADERS]
    if body_bytes is not None:
        lines.append(f"Content-Length: {body_bytes}")
    return len(("\r\n".join(lines) + "\r\n\r\n").encode()) + (body_bytes or 0)
