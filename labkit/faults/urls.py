"""Broker URLs pointed at a proxy: the port swapped, everything else kept (pure)."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from ..errors import ConfigError

__all__ = ["host_port", "with_port"]


def host_port(url: str) -> tuple[str, int]:
    """``(host, port)`` of a broker URL such as ``amqp://guest:guest@127.0.0.1:5672/``."""
    parts = urlsplit(url) if isinstance(url, str) else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        port = None
    if parts is None or not parts.hostname or not port:
        raise ConfigError(f"url={url!r} needs a host and a port, such as mqtt://127.0.0.1:1883")
    return parts.hostname, port


def with_port(url: str, port: int, host: str | None = None) -> str:
    """``url`` with its port replaced by ``port`` and, if given, its host by ``host``.

    User, password, path and query are kept.
    """
    host_port(url)
    parts = urlsplit(url)
    user = parts.netloc.rpartition("@")[0]
    host = host or parts.hostname or ""
    host = f"[{host}]" if ":" in host else host
    netloc = f"{user}@{host}:{port}" if user else f"{host}:{port}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
