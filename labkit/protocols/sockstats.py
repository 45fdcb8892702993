"""Bytes on the wire, as the kernel counted them on each TCP socket (Linux).

No proxy sits in the path: each client opens its TCP sockets through a
:class:`WireMeter`, which reads ``TCP_INFO`` from them (``getsockopt``) and
keeps a running total over the sockets already closed.  The counts are TCP
*payload* bytes (what the application protocol put on the wire, framing
included; IP and TCP headers excluded):

* sent = ``tcpi_bytes_sent - tcpi_bytes_retrans`` (Linux >= 4.19).  On 4.1-4.18
  it falls back to ``tcpi_bytes_acked``, which trails the sender by the peer's
  delayed ACK and counts the SYN and FIN as one byte each.
* received = ``tcpi_bytes_received`` (Linux >= 4.1), less the one byte the
  kernel counts for the peer's FIN once it arrived.

Measured on loopback (tests/test_sockstats.py) these match the bytes written
and read to the byte.  On other systems (macOS, Windows) and on Linux before
4.1 the counters are unavailable and :meth:`WireMeter.totals` returns None.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from typing import Any, NamedTuple

__all__ = ["TcpCounters", "tcp_counters", "MeteredSocket", "WireMeter", "AVAILABLE"]

#: True where TCP_INFO can be read (Linux).
AVAILABLE = sys.platform.startswith("linux") and hasattr(socket, "TCP_INFO")

# Offsets in Linux's struct tcp_info (include/uapi/linux/tcp.h), checked against offsetof() on 6.x.
_BYTES_ACKED_AT = 120  # __u64 tcpi_bytes_acked, then __u64 tcpi_bytes_received (Linux 4.1)
_BYTES_SENT_AT = 200  # __u64 tcpi_bytes_sent, then __u64 tcpi_bytes_retrans (Linux 4.19)
_MIN_LEN = _BYTES_ACKED_AT + 16
_SENT_LEN = _BYTES_SENT_AT + 16
_ASK_LEN = 256  # more than any field we read; the kernel returns what it has
_TWO_U64 = struct.Struct("=QQ")
# tcpi_state values after the peer's FIN arrived (CLOSE_WAIT, LAST_ACK, CLOSING, TIME_WAIT).
_PEER_FIN_STATES = frozenset({8, 9, 11, 6})


class TcpCounters(NamedTuple):
    """Payload bytes one socket has sent and received (bytes)."""

    sent: int
    received: int


def tcp_counters(sock: Any) -> TcpCounters | None:
    """Read ``sock``'s kernel counters (a socket or asyncio's TransportSocket); None if unavailable."""
    if not AVAILABLE:
        return None
    try:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _ASK_LEN)
    except (OSError, ValueError):
        return None
    if len(raw) < _MIN_LEN:
        return None
    acked, received = _TWO_U64.unpack_from(raw, _BYTES_ACKED_AT)
    if len(raw) >= _SENT_LEN:
        sent_total, retransmitted = _TWO_U64.unpack_from(raw, _BYTES_SENT_AT)
        sent = sent_total - retransmitted
    else:
        sent = acked
    if raw[0] in _PEER_FIN_STATES and received:
        received -= 1
    return TcpCounters(sent, received)


class MeteredSocket(socket.socket):
    """A socket that hands its final counters to its :class:`WireMeter` as it closes.

    asyncio transports close their socket with ``sock.close()`` after the
    protocol's ``connection_lost``, so the final reading covers every byte.
    """

    __slots__ = ("_meter",)

    def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None,
                 meter: WireMeter | None = None) -> None:
        super().__init__(family, type, proto, fileno)
        self._meter = meter

    def close(self) -> None:
        meter, self._meter = self._meter, None
        if meter is not None:
            meter._retire(self)
        super().close()


class WireMeter:
    """Running totals of the TCP payload bytes over every socket it opened, closed ones included."""

    def __init__(self) -> None:
        self._live: dict[MeteredSocket, TcpCounters] = {}
        self._closed = TcpCounters(0, 0)
        #: Sockets opened through this meter so far.
        self.sockets = 0

    def socket(self, family: int = socket.AF_INET, type: int = socket.SOCK_STREAM, proto: int = 0) -> MeteredSocket:
        """A new, unconnected TCP socket with TCP_NODELAY on, counted from now on."""
        sock = MeteredSocket(family, type, proto, meter=self)
        if family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._live[sock] = TcpCounters(0, 0)
        self.sockets += 1
        return sock

    def socket_factory(self, addr_info: tuple[Any, ...]) -> socket.socket:
        """aiohttp's ``TCPConnector(socket_factory=...)`` hook: ``addr_info`` is getaddrinfo's tuple."""
        family, type_, proto = addr_info[0], addr_info[1], addr_info[2]
        return self.socket(family, type_, proto)

    async def open_socket(self, host: str, port: int) -> MeteredSocket:
        """Connect a counted socket to ``host:port`` (each address getaddrinfo gives, in turn).

        Raises the last :class:`OSError`; the caller bounds the wait.
        """
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        error: OSError | None = None
        for family, type_, proto, _, address in infos:
            sock = self.socket(family, type_, proto)
            try:
                sock.setblocking(False)
                await loop.sock_connect(sock, address)
            except OSError as exc:
                sock.close()
                error = exc
                continue
            except BaseException:
                sock.close()
                raise
            return sock
        raise error or OSError(f"{host!r} resolved to no address")

    def _retire(self, sock: MeteredSocket) -> None:
        last = self._live.pop(sock, None)
        if last is None:
            return
        final = tcp_counters(sock) or last
        self._closed = TcpCounters(self._closed.sent + final.sent, self._closed.received + final.received)

    def totals(self) -> tuple[int, int] | None:
        """(bytes sent, bytes received) over all sockets since they connected; None where unavailable."""
        if not AVAILABLE:
            return None
        sent, received = self._closed
        for sock, last in list(self._live.items()):
            if sock.fileno() == -1:  # closed behind our back (detach()): keep the last reading
                del self._live[sock]
                self._closed = TcpCounters(self._closed.sent + last.sent, self._closed.received + last.received)
            else:
                now = tcp_counters(sock)
                if now is None:
                    return None
                self._live[sock] = last = now
            sent += last.sent
            received += last.received
        return sent, received

    @property
    def open_sockets(self) -> int:
        """Sockets opened through this meter and not yet closed."""
        return len(self._live)
