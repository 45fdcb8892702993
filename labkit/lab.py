"""``Lab``: the set of brokers one experiment talks to.

By default every broker runs in its own process, started concurrently and
stopped on ``close()``, on leaving a ``with``/``async with`` block, at
interpreter exit, and when the process that started it dies (even by
``kill -9``).  Starting and stopping use no event loop, so the same code works
in a script, in asyncio code (``async with``) and inside a running Jupyter
kernel.

    with Lab(["mqtt", "ws"]) as lab:
        print(lab.urls)          # {'mqtt': 'mqtt://127.0.0.1:...', 'mqtt_ws': ..., 'ws': ...}

A protocol whose URL is given (argument ``urls`` or ``LABKIT_*_URL``) uses that
external broker instead; on an external broker every topic, queue and
exchange name this user makes carries the prefix ``<user>/``.
"""

from __future__ import annotations

import asyncio
import getpass
import logging
import os
import re
from collections.abc import Iterable
from typing import Any

from .brokers.base import State
from .brokers.external import ExternalBroker, url_from_env
from .brokers.process import START_TIMEOUT_S, BrokerProcess
from .brokers.registry import DEFAULT_KIND, PROTOCOLS, check_kind, check_protocol, served_class
from .errors import BrokerError, BrokerUnavailable, ConfigError, LabkitError
from .net import LOOPBACK, check_host

log = logging.getLogger(__name__)

__all__ = ["Lab", "URL_KEYS", "user_prefix"]

#: Keys of ``Lab.urls`` and of ``labkit up --json``, in order.
URL_KEYS: tuple[str, ...] = ("mqtt", "mqtt_ws", "amqp", "ws", "sse")
_URL_KEYS_OF = {"mqtt": ("mqtt", "mqtt_ws"), "amqp": ("amqp",), "ws": ("ws",), "sse": ("sse",)}


def user_prefix() -> str:
    """``<user>/``: the namespace of this user's topics on a shared broker (``LABKIT_USER`` overrides)."""
    raw = os.environ.get("LABKIT_USER") or getpass.getuser()
    return re.sub(r"[^A-Za-z0-9_-]", "-", raw) + "/"


class Lab:
    """Start and stop a set of brokers: one per protocol.

    ``protocols``: any of ``mqtt``, ``amqp``, ``ws``, ``sse`` (default: all four).
    ``mqtt``: which MQTT broker runs locally, ``amqtt`` (default) or ``mosquitto``.
    ``urls``: external brokers by URL key (``mqtt``, ``mqtt_ws``, ``amqp``, ``ws``,
    ``sse``); ``use_env`` also reads ``LABKIT_*_URL``.
    ``missing``: ``"raise"`` (default) when a local broker cannot run here, or
    ``"skip"`` to go on without it (``lab.skipped`` says why).
    ``start_timeout`` (s) bounds each broker's start.
    """

    def __init__(
        self,
        protocols: Iterable[str] | str | None = None,
        *,
        mqtt: str = "amqtt",
        urls: dict[str, str] | None = None,
        use_env: bool = True,
        host: str = LOOPBACK,
        allow_remote: bool = False,
        missing: str = "raise",
        start_timeout: float = START_TIMEOUT_S,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if protocols is None:
            chosen = list(PROTOCOLS)
        elif isinstance(protocols, str):
            chosen = [p.strip() for p in protocols.split(",") if p.strip()]
        else:
            chosen = list(protocols)
        if not chosen:
            raise ConfigError("protocols is empty; name at least one of mqtt, amqp, ws, sse")
        for p in chosen:
            check_protocol(p)
        if check_kind(mqtt) not in ("amqtt", "mosquitto"):
            raise ConfigError(f"mqtt={mqtt!r} is not an MQTT broker; choose 'amqtt' or 'mosquitto'")
        if missing not in ("raise", "skip"):
            raise ConfigError(f"missing={missing!r} must be 'raise' or 'skip'")
        self.host = check_host(host, allow_remote)
        self.protocols = list(dict.fromkeys(chosen))
        self.kinds = {p: (mqtt if p == "mqtt" else DEFAULT_KIND[p]) for p in self.protocols}
        self.missing = missing
        self.start_timeout = start_timeout
        self._options = options or {}
        unknown = set(urls or {}) - set(URL_KEYS)
        if unknown:
            raise ConfigError(f"urls has unknown keys {sorted(unknown)}; use {', '.join(URL_KEYS)}")
        given = dict(urls or {})
        if use_env:
            for key in URL_KEYS:
                if key not in given and (value := url_from_env(key)):
                    given[key] = value
        self._external_urls = given
        #: protocol -> the broker handle (BrokerProcess or ExternalBroker).
        self.brokers: dict[str, BrokerProcess | ExternalBroker] = {}
        #: protocol -> why it was skipped (with missing="skip").
        self.skipped: dict[str, str] = {}
        self._started = False

    # --- queries -------------------------------------------------------------
    @property
    def urls(self) -> dict[str, str]:
        """URL key -> URL of every running broker (hosts written as 127.0.0.1)."""
        out: dict[str, str] = {}
        for key in URL_KEYS:
            for broker in self.brokers.values():
                if key in broker.urls:
                    out[key] = broker.urls[key]
        return out

    def is_external(self, protocol: str) -> bool:
        return isinstance(self.brokers.get(protocol), ExternalBroker)

    def prefix(self, protocol: str) -> str:
        """Topic prefix for ``protocol``: ``<user>/`` on an external broker, empty on a private one."""
        return user_prefix() if self.is_external(protocol) else ""

    def url(self, protocol: str) -> str:
        check_protocol(protocol)
        broker = self.brokers.get(protocol)
        if broker is None:
            why = self.skipped.get(protocol) or f"this lab was started with protocols={self.protocols}"
            raise BrokerUnavailable(f"no {protocol} broker in this lab: {why}")
        return broker.urls[_URL_KEYS_OF[protocol][0]]

    def client(self, protocol: str, **options: Any):  # type: ignore[no-untyped-def]
        """A client of ``protocol`` for this lab (not yet connected); see :func:`labkit.protocols.client`."""
        from .protocols import client

        options.setdefault("prefix", self.prefix(protocol))
        url = self.url(protocol)
        if protocol == "mqtt" and options.pop("transport", "tcp") == "ws":
            url = self.brokers["mqtt"].urls["mqtt_ws"]
        return client(protocol, url, **options)

    def describe(self) -> list[dict[str, Any]]:
        """One row per protocol: broker, state, URL, version, start time (s), pid."""
        rows = []
        for p in self.protocols:
            b = self.brokers.get(p)
            rows.append({
                "protocol": p,
                "broker": b.kind if b else self.kinds[p],
                "state": b.state.value if b else "skipped",
                "url": self.url(p) if b and b.state is State.READY else "",
                "version": getattr(b, "version", None) or "",
                "start_s": getattr(b, "start_s", None),
                "pid": getattr(b, "pid", None),
                "note": self.skipped.get(p, ""),
            })
        return rows

    # --- lifecycle -----------------------------------------------------------
    def _make(self, protocol: str) -> BrokerProcess | ExternalBroker | None:
        external = {k: self._external_urls[k] for k in _URL_KEYS_OF[protocol] if k in self._external_urls}
        if external:
            return ExternalBroker(protocol, external)
        kind = self.kinds[protocol]
        reason = served_class(kind).unavailable_reason()
        if reason:
            if self.missing == "raise":
                raise BrokerUnavailable(reason)
            self.skipped[protocol] = reason
            log.warning("skipping %s: %s", protocol, reason)
            return None
        opts = dict(self._options.get(protocol, {}))
        return BrokerProcess(kind, host=self.host, start_timeout=self.start_timeout, **opts)

    def start(self) -> Lab:
        """Start every broker concurrently and wait until all are ready (or raise, leaving nothing running)."""
        if self._started:
            return self
        self._started = True
        try:
            for p in self.protocols:
                broker = self._make(p)
                if broker is not None:
                    self.brokers[p] = broker.launch()
            for broker in self.brokers.values():
                broker.wait_ready()
        except BaseException:
            self.close()
            raise
        return self

    def restart(self, protocol: str) -> dict[str, str]:
        """Restart the broker of ``protocol`` on the same port(s); return the lab's URLs (unchanged).

        Blocks until the broker is ready again (RabbitMQ: a stop and a start,
        about 5-8 s here; the Python brokers: under a second).  Clients lose
        their connections and must connect again.  RabbitMQ keeps durable
        queues and persistent messages; the others start empty.  External
        brokers are not restarted (BrokerError).
        """
        check_protocol(protocol)
        broker = self.brokers.get(protocol)
        if broker is None:
            why = self.skipped.get(protocol) or f"this lab was started with protocols={self.protocols}"
            raise BrokerUnavailable(f"no {protocol} broker in this lab to restart: {why}")
        if isinstance(broker, ExternalBroker):
            raise BrokerError(f"the {protocol} broker is external ({self.url(protocol)}); labkit restarts only "
                              "the brokers it started: restart that one where it runs")
        broker.restart()
        return self.urls

    def close(self) -> None:
        """Stop every broker this lab started (idempotent, bounded in time)."""
        errors: list[LabkitError] = []
        for broker in self.brokers.values():
            try:
                broker.stop()
            except LabkitError as exc:  # keep stopping the others
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Lab:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> Lab:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.close)

    def __repr__(self) -> str:
        return f"<Lab {', '.join(self.protocols)}: {self.urls}>"

