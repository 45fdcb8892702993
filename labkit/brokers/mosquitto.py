"""Eclipse Mosquitto, the reference MQTT broker, as a supervised native process.

``start()`` writes a configuration into a fresh temporary folder (inside
``options.log_dir`` if given): a TCP listener and a WebSocket listener, both on
127.0.0.1, anonymous access, no persistence, a log file.  It launches
``mosquitto -c FILE`` with :func:`labkit.brokers.native.spawn` (never ``-d``:
a daemon would escape supervision) and proves readiness with a real MQTT
CONNECT/CONNACK on each listener.  ``options.extra`` adds or overrides
configuration lines (``{"max_queued_messages": 0}``).

With credentials (see :mod:`labkit.security`) both listeners bind
``options.host`` instead, anonymous clients are refused (``allow_anonymous
false``) and a ``password_file`` made by ``mosquitto_passwd -b`` holds the one
user; CONNECT without them gets CONNACK 5 (not authorised).

:func:`probe_mqtt` lives here because both MQTT brokers use it and this module
imports nothing heavy.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import websockets
from websockets.asyncio.client import connect as ws_connect

from ..errors import BrokerStartError, BrokerUnavailable, LabkitTimeout, PortInUse, ProtocolError
from ..net import LOOPBACK, check_host, check_port_free, connect_host, free_port, is_loopback
from ..security import Credentials, credentials_from_extra, without_secrets
from ..wire import mqtt as wire
from . import native
from .base import ServedBroker

log = logging.getLogger(__name__)

__all__ = ["MosquittoBroker", "probe_mqtt", "find_mosquitto", "find_mosquitto_passwd", "install_hint"]

#: Longest mosquitto may take to answer (s); it usually needs ~10 ms.
START_TIMEOUT_S = 10.0
_SEARCH = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/opt/homebrew/sbin/mosquitto")


# ------------------------------------------------------------------ readiness probe
async def _probe_once(host: str, port: int, path: str | None, timeout: float,
                      credentials: Credentials | None = None) -> None:
    user, password = (credentials.username, credentials.password.encode()) if credentials else (None, None)
    hello = wire.Connect(f"labkit-probe-{uuid.uuid4().hex[:8]}", keepalive_s=0, username=user,
                         password=password).encode()
    decoder = wire.Decoder()
    packets: list[wire.Packet] = []
    if path is None:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(hello)
            while not packets:
                data = await reader.read(64)
                if not data:
                    raise ProtocolError(f"{host}:{port} closed the connection before CONNACK")
                packets = decoder.feed(data)
            writer.write(wire.Disconnect().encode())
            await writer.drain()
        finally:
            writer.close()
    else:
        async with ws_connect(f"ws://{host}:{port}{path}", subprotocols=[websockets.Subprotocol("mqtt")],
                              compression=None, proxy=None, open_timeout=timeout, close_timeout=1.0) as conn:
            await conn.send(hello)
            while not packets:
                frame = await conn.recv()
                packets = decoder.feed(frame if isinstance(frame, bytes) else frame.encode())
            await conn.send(wire.Disconnect().encode())
    if not isinstance(packets[0], wire.Connack) or packets[0].return_code != 0:
        raise ProtocolError(f"{host}:{port} answered CONNECT with {packets[0]!r}")


async def probe_mqtt(host: str, port: int, timeout: float, path: str | None = None,
                     process: asyncio.subprocess.Process | None = None,
                     credentials: Credentials | None = None) -> float:
    """Repeat an MQTT CONNECT/CONNACK exchange until one succeeds; return the wait in ms.

    ``path`` probes MQTT over WebSockets instead of TCP; ``credentials`` log in.  If ``process``
    exits meanwhile, raise :class:`BrokerStartError` at once; after
    ``timeout`` seconds raise :class:`LabkitTimeout`.
    """
    started = time.monotonic()
    deadline = started + timeout
    last: BaseException | None = None
    for _attempt in range(100_000):  # bounded; the deadline ends it long before
        left = deadline - time.monotonic()
        if left <= 0:
            break
        try:
            await asyncio.wait_for(_probe_once(host, port, path, left, credentials), left)
            return (time.monotonic() - started) * 1000.0
        except (OSError, TimeoutError, ProtocolError, websockets.WebSocketException) as exc:
            last = exc
        # Not answering yet: pause 20 ms, or less if the process exits meanwhile.
        pause = min(0.02, max(0.0, deadline - time.monotonic()))
        if process is None:
            await asyncio.sleep(pause)
            continue
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), pause)
        except TimeoutError:
            continue
        raise BrokerStartError(f"the broker exited with code {process.returncode} before answering on port {port}")
    where = f"ws://{host}:{port}{path}" if path else f"{host}:{port}"
    raise LabkitTimeout(f"no MQTT CONNACK from {where} within {timeout} s (last error: {last})")


# ------------------------------------------------------------------ mosquitto
def find_mosquitto() -> str | None:
    """Path of the ``mosquitto`` binary (PATH, then the usual sbin folders), or None."""
    found = shutil.which("mosquitto")
    if found:
        return found
    return next((path for path in _SEARCH if os.access(path, os.X_OK)), None)


def find_mosquitto_passwd() -> str | None:
    """Path of ``mosquitto_passwd`` (PATH, then beside the broker binary), or None."""
    found = shutil.which("mosquitto_passwd")
    if found:
        return found
    binary = find_mosquitto()
    for folder in ([os.path.dirname(binary)] if binary else []) + ["/usr/bin", "/usr/local/bin", "/opt/homebrew/bin"]:
        candidate = os.path.join(folder, "mosquitto_passwd")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def install_hint() -> str:
    """The command that installs Mosquitto here."""
    if os.environ.get("CONDA_PREFIX"):
        return "conda install -c conda-forge mosquitto"
    if sys.platform == "darwin":
        return "brew install mosquitto"
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    return "apt-get install mosquitto" if root else "sudo apt-get install mosquitto"


class MosquittoBroker(ServedBroker):
    """Mosquitto on ``mqtt://127.0.0.1:P`` and ``ws://127.0.0.1:Q/mqtt``, supervised by this process."""

    kind = "mosquitto"
    protocol = "mqtt"

    def __init__(self, options: Any = None) -> None:
        super().__init__(options)
        self._proc: asyncio.subprocess.Process | None = None
        self._dir: str | None = None
        self._version: str | None = None
        self.log_path: str | None = None
        self.credentials = credentials_from_extra(self.options.extra)
        self._bind = LOOPBACK
        self._password_file: str | None = None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if find_mosquitto() is None:
            return f"the mosquitto binary is not installed; install it with `{install_hint()}`"
        return None

    @property
    def version(self) -> str:
        """First line of ``mosquitto -h``, e.g. ``mosquitto version 2.0.11``."""
        if self._version is None:
            binary = find_mosquitto()
            if binary is None:
                return "mosquitto (not installed)"
            out = subprocess.run([binary, "-h"], capture_output=True, text=True, timeout=5, check=False)
            self._version = (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr) else "mosquitto"
        return self._version

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.returncode is None else None

    def _write_config(self, port: int, ws_port: int) -> str:
        assert self._dir is not None and self.log_path is not None
        lines = [
            "# written by labkit; removed when the broker stops",
            "per_listener_settings false",
            f"listener {port} {self._bind}",
            "protocol mqtt",
            f"listener {ws_port} {self._bind}",
            "protocol websockets",
            # Without this, mosquitto 2.0's WebSocket listener ignores the address and binds every interface.
            "socket_domain ipv4",
        ]
        if self._password_file is None:
            lines.append("allow_anonymous true")
        else:  # per_listener_settings false: these hold for both listeners
            lines += ["allow_anonymous false", f"password_file {self._password_file}"]
        lines += [
            "persistence false",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "log_type information",
            "connection_messages true",
        ]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            # As root, mosquitto would switch to user 'mosquitto', which clears the parent-death signal.
            lines.append("user root")
        # Mosquitto 2.0.11 acknowledges, then drops, the QoS 2 messages a client has in flight beyond this
        # limit (20 by default): no limit keeps QoS 2 exactly-once (docs/mqtt-conformance.md, deviation M1).
        settings: dict[str, Any] = {"max_inflight_messages": 0, **without_secrets(self.options.extra)}
        lines += [f"{key} {value}" for key, value in settings.items()]
        path = os.path.join(self._dir, "mosquitto.conf")
        with open(path, "w", encoding="utf-8") as handle:
            handle.write("\n".join(lines) + "\n")
        return path

    def _log_tail(self, lines: int = 5) -> str:
        try:
            with open(self.log_path or "", encoding="utf-8", errors="replace") as handle:
                return " | ".join(handle.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    async def start(self) -> dict[str, str]:
        """Spawn mosquitto, probe both listeners, return ``mqtt`` and ``mqtt_ws`` URLs."""
        binary = find_mosquitto()
        if binary is None:
            raise BrokerUnavailable(f"Mosquitto is not installed; install it with `{install_hint()}`")
        host = check_host(self.options.host, self.credentials is not None, self.credentials)
        self._bind = LOOPBACK if is_loopback(host) else host
        for port in (self.options.port, self.options.ws_port):
            check_port_free(self._bind, port)
        parent = self.options.log_dir or None
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._dir = tempfile.mkdtemp(prefix="labkit-mosquitto-", dir=parent)
        if self.credentials is not None:
            self._password_file = await self._make_password_file(self.credentials)
        chosen = not (self.options.port and self.options.ws_port)
        # A free port we chose can be taken before mosquitto binds it: then retry once on new ones.
        urls = await self._launch(binary, parent, retry=chosen)
        if urls is None:
            urls = await self._launch(binary, parent, retry=False)
        assert urls is not None
        return urls

    async def _make_password_file(self, creds: Credentials) -> str:
        """``mosquitto_passwd -c -b`` into the broker's private folder (mode 0600); return the file's path."""
        assert self._dir is not None
        tool = find_mosquitto_passwd()
        if tool is None:
            raise BrokerUnavailable("mosquitto_passwd is not installed, so Mosquitto cannot enforce credentials; "
                                    f"install it with `{install_hint()}` or use mqtt='amqtt'")
        path = os.path.join(self._dir, "passwd")
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        proc = await asyncio.create_subprocess_exec(
            tool, "-b", path, creds.username, creds.password,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        try:
            out, _ = await asyncio.wait_for(proc.communicate(), START_TIMEOUT_S)
        except TimeoutError:
            proc.kill()
            await proc.wait()
            raise BrokerStartError(f"mosquitto_passwd did not finish within {START_TIMEOUT_S} s") from None
        if proc.returncode != 0:
            raise BrokerStartError(f"mosquitto_passwd failed with code {proc.returncode}: "
                                   f"{out.decode(errors='replace').strip()[:200]}")
        os.chmod(path, 0o600)
        return path

    async def _launch(self, binary: str, parent: str | None, retry: bool) -> dict[str, str] | None:
        """Spawn and probe once; None if a port was taken and ``retry`` allows another try."""
        assert self._dir is not None
        port = self.options.port or free_port()
        ws_port = self.options.ws_port or free_port()
        self.log_path = os.path.join(parent or self._dir, f"mosquitto-{port}.log")
        config = self._write_config(port, ws_port)
        self._proc = await native.spawn([binary, "-c", config], log_path=self.log_path, cwd=self._dir)
        try:
            where = connect_host(self._bind)
            await probe_mqtt(where, port, START_TIMEOUT_S, process=self._proc, credentials=self.credentials)
            await probe_mqtt(where, ws_port, START_TIMEOUT_S, path="/mqtt", process=self._proc,
                             credentials=self.credentials)
        except (BrokerStartError, LabkitTimeout) as exc:
            tail = self._log_tail()
            await native.terminate(self._proc)
            self._proc = None
            if "in use" not in tail.lower():
                raise BrokerStartError(f"mosquitto did not become ready: {exc} (log {self.log_path}: {tail})") from exc
            if retry:
                log.warning("mosquitto could not bind %d/%d; retrying on other ports", port, ws_port)
                return None
            raise PortInUse(f"mosquitto could not bind {self._bind}:{port} or :{ws_port} ({tail}); "
                            "pass port=0 and ws_port=0 to choose free ports") from exc
        log.info("mosquitto (pid %d) ready on %d (tcp) and %d (websockets)", self._proc.pid, port, ws_port)
        if not is_loopback(self._bind):
            log.warning("mosquitto exposed beyond this machine on %s (ports %d, %d); clients need user %r and its "
                        "password", self._bind, port, ws_port, self.credentials.username if self.credentials else "")
        where = connect_host(self._bind)
        return {"mqtt": f"mqtt://{where}:{port}", "mqtt_ws": f"ws://{where}:{ws_port}/mqtt"}

    async def stop(self) -> None:
        """Terminate mosquitto and remove its temporary folder; idempotent."""
        proc, self._proc = self._proc, None
        try:
            if proc is not None:
                code = await native.terminate(proc)
                log.info("mosquitto (pid %d) exited with %s", proc.pid, code)
        finally:
            if self._dir is not None:
                shutil.rmtree(self._dir, ignore_errors=True)
                self._dir = None
