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
from .security import Credentials, redact_url, url_with_credentials

log = logging.getLogger(__name__)

__all__ = ["Lab", "URL_KEYS", "user_prefix"]

#: Keys of ``Lab.urls`` and of ``labkit up --json``, in order.
URL_KEYS: tuple[str, ...] = ("mqtt", "mqtt_ws", "amqp", "amqp1", "ws", "sse")
_URL_KEYS_OF = {"mqtt": ("mqtt", "mqtt_ws"), "amqp": ("amqp",), "ws": ("ws",), "sse": ("sse",)}


def _amqp1_rides_on_amqp(chosen: list[str], urls: dict[str, str] | None, use_env: bool) -> list[str]:
    """``amqp1`` is no broker of its own: RabbitMQ's AMQP 1.0 plugin (protocol ``amqp``), or an external URL."""
    if "amqp1" not in chosen:
        return chosen
    external = (urls or {}).get("amqp1") or (url_from_env("amqp1") if use_env else None)
    out = []
    for p in chosen:
        if p == "amqp1":
            if external:
                continue
            p = "amqp"
        out.append(p)
    return out


def user_prefix() -> str:
    """``<user>/``: the namespace of this user's topics on a shared broker (``LABKIT_USER`` overrides)."""
    raw = os.environ.get("LABKIT_USER") or getpass.getuser()
    return re.sub(r"[^A-Za-z0-9_-]", "-", raw) + "/"


class Lab:
    """Start and stop a set of brokers: one per protocol.

    ``protocols``: any of ``mqtt``, ``amqp``, ``ws``, ``sse`` (default: all four), and
    ``amqp1`` (AMQP 1.0: the RabbitMQ of ``amqp`` through its plugin, or ``LABKIT_AMQP1_URL``).
    ``mqtt``: which MQTT broker runs locally, ``amqtt`` (default) or ``mosquitto``.
    ``urls``: external brokers by URL key (``mqtt``, ``mqtt_ws``, ``amqp``, ``ws``,
    ``sse``); ``use_env`` also reads ``LABKIT_*_URL``.
    ``missing``: ``"raise"`` (default) when a local broker cannot run here, or
    ``"skip"`` to go on without it (``lab.skipped`` says why).
    ``start_timeout`` (s) bounds each broker's start.
    ``host``: where the brokers listen (127.0.0.1); any other address needs
    ``allow_remote=True`` and ``credentials`` (a :class:`labkit.Credentials`),
    which every broker then enforces, and :attr:`urls` then carry (see
    docs/security.md).
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
        credentials: Credentials | None = None,
        missing: str = "raise",
        start_timeout: float = START_TIMEOUT_S,
        options: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if protocols is None:
            chosen = list(PROTOCOLS)
        elif isinstance(protocols, str):
            chosen = [p.strip() for p in protocols.split(",") if p.strip()]
        elif isinstance(protocols, Iterable):
            chosen = list(protocols)
        else:
            raise ConfigError(f"protocols={protocols!r} must be a list such as ['mqtt', 'ws'] or a string such as "
                              "'mqtt,ws'")
        if not chosen:
            raise ConfigError("protocols is empty; name at least one of mqtt, amqp, ws, sse")
        #: True when AMQP 1.0 was asked for ("amqp1": served by RabbitMQ's plugin unless LABKIT_AMQP1_URL says).
        self.wants_amqp1 = "amqp1" in chosen
        chosen = _amqp1_rides_on_amqp(chosen, urls, use_env)
        for p in chosen:
            check_protocol(p)
        if check_kind(mqtt) not in ("amqtt", "mosquitto"):
            raise ConfigError(f"mqtt={mqtt!r} is not an MQTT broker; choose 'amqtt' or 'mosquitto'")
        if missing not in ("raise", "skip"):
            raise ConfigError(f"missing={missing!r} must be 'raise' or 'skip'")
        if credentials is not None and not isinstance(credentials, Credentials):
            raise ConfigError(f"credentials={type(credentials).__name__} must be "
                              "labkit.Credentials(username, password)")
        self.host = check_host(host, allow_remote, credentials)
        self.allow_remote = allow_remote
        #: What the lab's own brokers enforce (None: anonymous on loopback).
        self.credentials = credentials
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
        """URL key -> URL of every running broker (hosts written as 127.0.0.1), with the lab's credentials in them."""
        out: dict[str, str] = {}
        for key in URL_KEYS:
            for broker in self.brokers.values():
                if key in broker.urls:
                    out[key] = self._with_credentials(broker, broker.urls[key])
        if "amqp1" in self._external_urls:  # an external AMQP 1.0 broker wins over RabbitMQ's plugin
            out["amqp1"] = self._external_urls["amqp1"]
        return out

    def _with_credentials(self, broker: BrokerProcess | ExternalBroker, url: str) -> str:
        return url if isinstance(broker, ExternalBroker) else url_with_credentials(url, self.credentials)

    def is_external(self, protocol: str) -> bool:
        if protocol == "amqp1" and "amqp1" in self._external_urls:
            return True
        return isinstance(self.brokers.get("amqp" if protocol == "amqp1" else protocol), ExternalBroker)

    def prefix(self, protocol: str) -> str:
        """Topic prefix for ``protocol``: ``<user>/`` on an external broker, empty on a private one."""
        return user_prefix() if self.is_external(protocol) else ""

    def url(self, protocol: str) -> str:
        if protocol == "amqp1":
            return self._amqp1_url()
        check_protocol(protocol)
        broker = self.brokers.get(protocol)
        if broker is None:
            why = self.skipped.get(protocol) or f"this lab was started with protocols={self.protocols}"
            raise BrokerUnavailable(f"no {protocol} broker in this lab: {why}")
        return self._with_credentials(broker, broker.urls[_URL_KEYS_OF[protocol][0]])

    def _amqp1_url(self) -> str:
        """The AMQP 1.0 URL: ``LABKIT_AMQP1_URL`` (or ``urls['amqp1']``), else RabbitMQ's plugin on the amqp port."""
        url = self.urls.get("amqp1")
        if url:
            return url
        if self.brokers.get("amqp") is None:
            why = self.skipped.get("amqp") or f"this lab was started with protocols={self.protocols}"
            raise BrokerUnavailable(f"no AMQP 1.0 broker in this lab: {why}; start it with 'amqp1' (or 'amqp') "
                                    "among the protocols, or set LABKIT_AMQP1_URL")
        raise BrokerUnavailable("the lab's RabbitMQ serves no AMQP 1.0: its plugin rabbitmq_amqp1_0 is not "
                                "installed (it ships with RabbitMQ 3.x; see 'labkit doctor'), or the broker is "
                                "external; set LABKIT_AMQP1_URL to an AMQP 1.0 broker")

    def client(self, protocol: str, **options: Any):  # type: ignore[no-untyped-def]
        """A client of ``protocol`` for this lab (not yet connected); see :func:`labkit.protocols.client`."""
        from .protocols import client

        options.setdefault("prefix", self.prefix(protocol))
        url = self.url(protocol)
        if protocol == "mqtt" and options.pop("transport", "tcp") == "ws":
            url = self._with_credentials(self.brokers["mqtt"], self.brokers["mqtt"].urls["mqtt_ws"])
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
                "url": redact_url(self.url(p)) if b and b.state is State.READY else "",
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
        if kind == "rabbitmq":  # the lab's node also speaks AMQP 1.0 when its plugin is installed (docs/amqp1.md)
            opts["extra"] = {"amqp1": True, **(opts.get("extra") or {})}
        return BrokerProcess(kind, host=self.host, start_timeout=self.start_timeout, allow_remote=self.allow_remote,
                             credentials=self.credentials, **opts)

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

    def restart(self, protocol: str, how: str = "sigterm", down_s: float = 0.0) -> dict[str, str]:
        """Restart the broker of ``protocol`` on the same port(s); return the lab's URLs (unchanged).

        ``how``: ``"sigterm"`` (a clean shutdown) or ``"sigkill"`` (a crash of
        the broker's whole process group); ``down_s``: seconds it stays down
        (see :meth:`labkit.brokers.process.BrokerProcess.restart`).

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
        broker.restart(how=how, down_s=down_s)
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
        return f"<Lab {', '.join(self.protocols)}: { {k: redact_url(v) for k, v in self.urls.items()} }>"

