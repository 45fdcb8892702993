"""Small socket helpers: loopback checks, free ports, readiness waits.

No fixed ports and no sleeps: a broker binds port 0 (or a port we found free)
and readiness is probed with a deadline.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import time

from .errors import ConfigError, LabkitTimeout, PortInUse

__all__ = ["LOOPBACK", "is_loopback", "check_host", "connect_host", "free_port", "check_port_free", "wait_tcp"]

#: The lab's default bind and connect address (not "localhost", which may resolve to ::1).
LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and the name ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_host(host: str, allow_remote: bool = False, credentials: object | None = None) -> str:
    """Return ``host`` if the lab may bind to it, else raise :class:`ConfigError`.

    Loopback is always allowed.  Any other address (``0.0.0.0`` included)
    needs both ``allow_remote=True`` and ``credentials`` (a
    :class:`labkit.Credentials`), which every broker then enforces.
    """
    if not isinstance(host, str) or not host:
        raise ConfigError(f"host={host!r} must be an address such as '127.0.0.1'")
    if is_loopback(host):
        return host
    if not allow_remote:
        raise ConfigError(
            f"host={host!r} is not a loopback address; the lab binds to 127.0.0.1 unless asked: pass "
            "allow_remote=True and credentials=labkit.Credentials(username, password)"
        )
    if credentials is None:
        raise ConfigError(
            f"host={host!r} would expose the brokers beyond this machine without a password; pass "
            "credentials=labkit.Credentials(username, password) (see docs/security.md)"
        )
    return host


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a listener bound to ``host``.

    127.0.0.1 for loopback and for the wildcard addresses (``0.0.0.0``,
    ``::``), which accept loopback connections too; ``host`` itself otherwise.
    """
    if not host or host in ("0.0.0.0", "::", "[::]") or is_loopback(host):
        return LOOPBACK
    return host


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago (the OS picks it)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def check_port_free(host: str, port: int) -> None:
    """Raise :class:`PortInUse` if ``port`` cannot be bound on ``host``."""
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"port={port!r} must be a whole number from 1 to 65535, or 0 to choose a free one")
    if port == 0:
        return
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise PortInUse(
                    f"port {port} on {host} is already in use; pass another port, or port=0 to choose a free one"
                ) from None
            raise ConfigError(f"cannot bind {host}:{port} ({exc.strerror}); pass port=0 to choose a free one") from None


def wait_tcp(host: str, port: int, timeout: float) -> float:
    """Wait until ``host:port`` accepts a TCP connection; return the wait in seconds."""
    start = time.monotonic()
    deadline = start + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=max(0.05, deadline - time.monotonic())):
                return time.monotonic() - start
        except OSError:
            if time.monotonic() >= deadline:
                raise LabkitTimeout(f"nothing accepted connections on {host}:{port} within {timeout} s") from None
            time.sleep(0.02)
