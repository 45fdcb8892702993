"""A private RabbitMQ node: its own name, folders, ports and port mapper, on 127.0.0.1 only.

The node runs from the real start script (``/usr/lib/rabbitmq/bin/rabbitmq-server``
on Debian, ``rabbitmq-server`` on PATH otherwise) with ``RUNNING_UNDER_SYSTEMD=true``,
so the script ``exec``s Erlang and ``beam.smp`` is our direct child: the parent-death
signal set by :func:`labkit.brokers.native.spawn` reaches it.  As root it runs as
user ``rabbitmq`` when that user exists (the Debian package's), else as whoever we are.

Everything lives in one temporary folder (removed by :meth:`RabbitMQBroker.stop`):
Mnesia data, config, plugin list (empty), Erlang cookie, pid file.  A node given
its folder (``extra["node_dir"]``, as :class:`~labkit.brokers.process.BrokerProcess`
does so that it can restart the node) keeps its name there, so the next node started
on that folder is the same node again, with its durable queues and persistent
messages; the folder outlives a stop only while it holds the :data:`KEEP_MARKER`
file (a restart is under way).  The node also gets its own port mapper (``epmd``, see :mod:`labkit.brokers.epmd`) on a
free 127.0.0.1 port, so stopping the node never touches a system RabbitMQ's
``epmd`` on 4369.
Readiness is proved in AMQP's own terms: the node must answer the protocol
header with ``connection.start``.  See docs/amqp.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import logging
import os
import pwd
import secrets
import shutil
import tempfile
import time
from collections import deque
from typing import Any

from ..errors import BrokerStartError, BrokerUnavailable, ConfigError
from ..net import LOOPBACK, check_host, check_port_free, free_port, is_loopback
from ..security import credentials_from_extra
from ..wire.amqp import PROTOCOL_HEADER, AmqpWireError, ConnectionStart, parse_connection_start
from . import native
from .epmd import find_epmd, start_epmd
from .base import BrokerOptions, Lifecycle, ServedBroker, State

log = logging.getLogger(__name__)

__all__ = [
    "RabbitMQBroker",
    "find_server_script",
    "find_amqp1_plugin",
    "AMQP1_PLUGIN",
    "install_hint",
    "keep_for_restart",
    "log_excerpt",
    "restartable_extra",
    "node_user",
    "probe_amqp",
    "sweep_stale_folders",
]

DEBIAN_SCRIPT = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_TIMEOUT_S = 30.0  # default readiness deadline (s)
STOP_TIMEOUT_S = 5.0  # SIGTERM grace before SIGKILL (s); the node stops in ~1-3 s
POLL_S = 0.1  # pause between readiness probes (s)
LOG_TAIL_LINES = 6  # log lines quoted in a start error
FOLDER_PREFIX = "labkit-rabbitmq-node-"
STALE_AFTER_S = 60.0  # an ownerless node folder older than this is swept (s)
KEEP_MARKER = "labkit-keep"  # in a node folder: the next stop keeps the folder (a restart follows)
NODE_NAME_FILE = "labkit-node-name"  # in a node folder: the node's name, reused by the next start on it
AMQP1_PLUGIN = "rabbitmq_amqp1_0"  # the AMQP 1.0 plugin, enabled when the install ships it (see docs/amqp1.md)


def restartable_extra(owner_pid: int) -> dict[str, Any]:
    """``extra`` options for a node that can be restarted with its data: a folder path of its own, not yet made.

    ``owner_pid`` is the process whose death makes the folder stale (the
    broker's parent), so :func:`sweep_stale_folders` leaves it alone while
    a restart is under way.
    """
    path = os.path.join(tempfile.gettempdir(), f"{FOLDER_PREFIX}{secrets.token_hex(6)}")
    return {"node_dir": path, "owner_pid": int(owner_pid)}


def keep_for_restart(node_dir: str) -> bool:
    """Ask the node using ``node_dir`` to keep it when it stops next; False if there is no such folder."""
    if not os.path.isdir(node_dir):
        return False
    with open(os.path.join(node_dir, KEEP_MARKER), "w") as f:
        f.write(str(os.getpid()))
    return True


def install_hint() -> str:
    """The command that installs RabbitMQ here."""
    if os.environ.get("CONDA_PREFIX"):
        return "conda install -c conda-forge rabbitmq-server"
    if os.geteuid() == 0:
        return "apt-get install -y rabbitmq-server"
    return "sudo apt-get install -y rabbitmq-server"


def find_server_script(override: str | None = None) -> str:
    """Path of the script that ``exec``s Erlang (not Debian's ``su`` wrapper in /usr/sbin)."""
    if override:
        if os.access(override, os.X_OK):
            return override
        raise ConfigError(f"server_script={override!r} is not an executable file; fix the path or drop the option")
    if os.access(DEBIAN_SCRIPT, os.X_OK):
        return DEBIAN_SCRIPT
    found = shutil.which("rabbitmq-server")
    if found:
        real = os.path.realpath(found)
        if os.path.basename(real) == "rabbitmq-script-wrapper":  # Debian-style wrapper: use the script beside it
            beside = os.path.join(os.path.dirname(real), "rabbitmq-server")
            if os.access(beside, os.X_OK):
                return beside
        return found
    raise BrokerUnavailable(f"RabbitMQ is not installed (no rabbitmq-server found); install it with: {install_hint()}")


def find_amqp1_plugin(script: str | None = None) -> str | None:
    """Path of the ``rabbitmq_amqp1_0`` plugin shipped with the RabbitMQ of ``script`` (folder or .ez), or None."""
    try:
        script = script or find_server_script()
    except BrokerUnavailable:
        return None
    home = os.path.dirname(os.path.dirname(os.path.realpath(script)))  # /usr/lib/rabbitmq on Debian
    patterns = [os.path.join(home, "lib", "rabbitmq_server-*", "plugins", f"{AMQP1_PLUGIN}-*"),
                os.path.join(home, "plugins", f"{AMQP1_PLUGIN}-*")]  # generic-unix and conda layouts
    found = sorted(path for pattern in patterns for path in glob.glob(pattern))
    return found[-1] if found else None


def node_user() -> str | None:
    """``"rabbitmq"`` when we are root and that user exists (Debian), else None (run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("rabbitmq")
    except KeyError:
        return None
    return "rabbitmq"


async def probe_amqp(host: str, port: int, timeout: float) -> ConnectionStart:
    """Send the AMQP protocol header and decode the broker's ``connection.start`` within ``timeout`` s."""
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(PROTOCOL_HEADER)
            data = b""
            while (start := parse_connection_start(data)) is None:
                chunk = await reader.read(4096)
                if not chunk:
                    raise ConnectionResetError(f"{host}:{port} closed the connection before connection.start")
                data += chunk
            return start
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()


def sweep_stale_folders(parent: str | None = None, min_age_s: float = STALE_AFTER_S) -> list[str]:
    """Remove node folders whose owning process died without cleaning up (``kill -9``); return them.

    A folder is stale when the PID in its ``labkit-owner`` file is gone and it
    is older than ``min_age_s`` seconds (so a node being set up is never touched).
    """
    removed = []
    for path in glob.glob(os.path.join(parent or tempfile.gettempdir(), f"{FOLDER_PREFIX}*")):
        try:
            if time.time() - os.path.getmtime(path) < min_age_s:
                continue
            with open(os.path.join(path, "labkit-owner")) as f:
                owner = int(f.read().strip() or 0)
        except (OSError, ValueError):
            continue  # not ours, or unreadable: leave it
        if owner and not native.pid_alive(owner):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
            log.info("removed %s, left behind by pid %d", path, owner)
    return removed


def log_excerpt(path: str, lines: int = LOG_TAIL_LINES) -> str:
    """The first few ``[error]`` messages of a RabbitMQ log (they say why), else its last lines."""
    errors: list[str] = []
    tail: deque[str] = deque(maxlen=lines)
    try:
        with open(path, errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                tail.append(line)
                if "[error]" in line and len(errors) < lines:
                    text = line.split("[error]", 1)[1].split(">", 1)[-1].strip()
                    if text and text not in errors:
                        errors.append(text)
    except OSError:
        return "(no log)"
    return " | ".join(errors or tail) or "(log is empty)"


class RabbitMQBroker(ServedBroker):
    """A RabbitMQ node of our own; ``start()`` returns ``{"amqp": "amqp://guest:guest@127.0.0.1:PORT/"}``.

    ``options.extra`` keys: ``start_timeout_s`` (readiness deadline, default
    30 s), ``stop_timeout_s`` (SIGTERM grace, default 5 s), ``config``
    (extra ``rabbitmq.conf`` lines: a list of strings or a dict of settings),
    ``server_script`` (path of the start script, to use another install),
    ``node_dir`` (an absolute folder path for the node's data instead of a new
    temporary folder: a node started again on it finds its durable queues and
    persistent messages; see :func:`restartable_extra`) and ``owner_pid``
    (the process that owns ``node_dir``, written to its ``labkit-owner``),
    ``amqp1`` (True: enable the AMQP 1.0 plugin when it is installed, as
    :class:`~labkit.lab.Lab` does; the URLs then gain ``amqp1``,
    ``amqp1://guest:guest@127.0.0.1:PORT``; default False).
    """

    kind = "rabbitmq"
    protocol = "amqp"

    def __init__(self, options: BrokerOptions | None = None) -> None:
        super().__init__(options)
        self.lifecycle = Lifecycle("rabbitmq")
        extra = self.options.extra
        self.start_timeout_s = _positive(extra, "start_timeout_s", START_TIMEOUT_S)
        self.stop_timeout_s = _positive(extra, "stop_timeout_s", STOP_TIMEOUT_S)
        self.node_name = f"labkit-{os.getpid()}-{secrets.token_hex(3)}@localhost"
        node_dir = extra.get("node_dir")
        if node_dir is not None and not (isinstance(node_dir, str) and os.path.isabs(node_dir)):
            raise ConfigError(f"extra['node_dir']={node_dir!r} must be an absolute folder path, or left out")
        owner = extra.get("owner_pid", os.getpid())
        if isinstance(owner, bool) or not isinstance(owner, int) or owner <= 0:
            raise ConfigError(f"extra['owner_pid']={owner!r} must be a process id (a whole number > 0)")
        self._node_dir: str | None = node_dir
        self._owner_pid = owner
        #: True when start() found the data of an earlier node in ``node_dir`` (a restart).
        self.reused = False
        self.data_dir: str | None = None
        self.log_path: str | None = None
        self.port: int | None = None
        self.dist_port: int | None = None
        self.epmd_port: int | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._epmd: asyncio.subprocess.Process | None = None
        self._own_log = False  # the log is ours to delete after a clean stop
        self._version = "RabbitMQ"
        self._bind_host = LOOPBACK
        self._listen_host = LOOPBACK
        self._config_text()  # a bad extra['config'] fails here, not after launch
        amqp1 = extra.get("amqp1", False)
        if not isinstance(amqp1, bool):
            raise ConfigError(f"extra['amqp1']={amqp1!r} must be True (enable AMQP 1.0 when the plugin is there) "
                              "or False (the default)")
        #: True when the node serves AMQP 1.0 too (plugin rabbitmq_amqp1_0, same port).
        self._amqp1 = amqp1 and find_amqp1_plugin(extra.get("server_script")) is not None

    @classmethod
    def unavailable_reason(cls) -> str | None:
        """Why RabbitMQ cannot run here (with the install command), or None."""
        try:
            find_epmd(find_server_script(), reinstall=install_hint())
        except BrokerUnavailable as exc:
            return str(exc)
        return None

    @property
    def version(self) -> str:
        return self._version

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def epmd_pid(self) -> int | None:
        """PID of the node's own port mapper."""
        return self._epmd.pid if self._epmd is not None else None

    def _config_text(self) -> str:
        lines = [
            "# written by labkit for one private node",
            "loopback_users.guest = true",
        ]
        creds = credentials_from_extra(self.options.extra)
        if creds is not None:  # the node's first boot creates this user instead of guest (docs/security.md)
            lines += [f"default_user = {creds.username}", f"default_pass = {creds.password}"]
        extra = self.options.extra.get("config") or []
        if isinstance(extra, dict):
            lines += [f"{key} = {str(value).lower() if isinstance(value, bool) else value}"
                      for key, value in extra.items()]
        elif isinstance(extra, list | tuple) and all(isinstance(line, str) for line in extra):
            lines += list(extra)
        else:
            raise ConfigError(f"extra['config']={extra!r} must be a list of rabbitmq.conf lines or a dict of settings")
        return "\n".join(lines) + "\n"

    def _prepare(self, user: str | None) -> None:
        """Create the node's folder and files (owned by ``user`` when given); reuse ``node_dir`` if it has a node."""
        if self._node_dir is not None:
            base = self._node_dir
            os.makedirs(base, exist_ok=True)
            self._write(base, "labkit-owner", str(self._owner_pid))  # before the sweep: this folder is alive
            with contextlib.suppress(FileNotFoundError):
                os.remove(os.path.join(base, KEEP_MARKER))  # this start consumes the marker: the next stop cleans
        sweep_stale_folders()
        if self._node_dir is None:
            base = tempfile.mkdtemp(prefix=FOLDER_PREFIX)
            self._write(base, "labkit-owner", str(self._owner_pid))  # a later start sweeps it if we die by kill -9
        self.data_dir = base
        name_file = os.path.join(base, NODE_NAME_FILE)
        if os.path.isfile(name_file):  # an earlier node's folder: be that node again (Mnesia is per node name)
            with open(name_file) as f:
                self.node_name = f.read().strip() or self.node_name
            self.reused = True
        files = {
            NODE_NAME_FILE: self.node_name,
            "rabbitmq.conf": self._config_text(),
            "enabled_plugins": f"[{AMQP1_PLUGIN}].\n" if self._amqp1 else "[].\n",
            "rabbitmq-env.conf": "",  # read instead of /etc/rabbitmq/rabbitmq-env.conf
        }
        for name, text in files.items():
            self._write(base, name, text)
        os.chmod(os.path.join(base, "rabbitmq.conf"), 0o600)  # it may hold default_pass
        cookie = os.path.join(base, ".erlang.cookie")
        if not os.path.isfile(cookie):
            self._write(base, ".erlang.cookie", secrets.token_hex(16).upper())
        os.chmod(cookie, 0o600)
        os.makedirs(os.path.join(base, "mnesia"), exist_ok=True)
        if user is not None:
            entry = pwd.getpwnam(user)
            for root, dirs, names in os.walk(base):
                for name in [*dirs, *names, ""]:
                    os.chown(os.path.join(root, name) if name else root, entry.pw_uid, entry.pw_gid)

    @staticmethod
    def _write(folder: str, name: str, text: str) -> None:
        with open(os.path.join(folder, name), "w") as f:
            f.write(text)

    def _environment(self) -> dict[str, str]:
        """The node's environment: ours minus any RABBITMQ_*/ERL_*, plus the private settings."""
        base = self.data_dir or ""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RABBITMQ_", "ERL_")) and k != "NOTIFY_SOCKET"}
        env.update(
            HOME=base,
            RUNNING_UNDER_SYSTEMD="true",  # the script then execs Erlang: beam.smp is our child
            RABBITMQ_NODENAME=self.node_name,
            RABBITMQ_USE_LONGNAME="false",
            RABBITMQ_MNESIA_BASE=os.path.join(base, "mnesia"),
            RABBITMQ_LOG_BASE=base,
            RABBITMQ_LOGS="-",  # to stdout, which spawn() sends to our log file
            RABBITMQ_ENABLED_PLUGINS_FILE=os.path.join(base, "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=os.path.join(base, "rabbitmq.conf"),
            RABBITMQ_ADVANCED_CONFIG_FILE=os.path.join(base, "advanced.config"),
            RABBITMQ_CONF_ENV_FILE=os.path.join(base, "rabbitmq-env.conf"),
            RABBITMQ_PID_FILE=os.path.join(base, "rabbitmq.pid"),
            RABBITMQ_NODE_IP_ADDRESS=self._listen_host,
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
            ERL_EPMD_ADDRESS=LOOPBACK,
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_CRASH_DUMP=os.path.join(base, "erl_crash.dump"),
        )
        return env

    def _open_log(self) -> str:
        stem = self.node_name.split("@")[0]
        if self.options.log_dir:
            os.makedirs(self.options.log_dir, exist_ok=True)
            return os.path.join(self.options.log_dir, f"rabbitmq-{stem}.log")
        # Outside the data folder, so the log a start error names survives the clean-up.
        fd, path = tempfile.mkstemp(prefix=f"{stem}-", suffix=".log")
        os.close(fd)
        self._own_log = True
        return path

    async def start(self) -> dict[str, str]:
        """Launch the node and wait until it answers AMQP; raise BrokerStartError otherwise."""
        self.lifecycle.to(State.STARTING)
        try:
            creds = credentials_from_extra(self.options.extra)
            host = check_host(self.options.host, creds is not None, creds)
            self._bind_host = host if host.startswith("127.") else LOOPBACK
            self._listen_host = self._bind_host if is_loopback(host) else host  # beyond loopback: with credentials
            script = find_server_script(self.options.extra.get("server_script"))
            epmd = find_epmd(script, reinstall=install_hint())
            check_port_free(self._bind_host, self.options.port)
        except BaseException:
            self.lifecycle.to(State.FAILED)
            raise
        self.port = self.options.port or free_port(self._bind_host)
        user = node_user()
        try:
            self._prepare(user)
            assert self.data_dir is not None
            self.log_path = self._open_log()
            started = time.monotonic()
            self._epmd, self.epmd_port = await start_epmd(epmd, log_path=self.log_path, user=user, cwd=self.data_dir)
            self.dist_port = _other_free_port({self.port, self.epmd_port})
            env = self._environment()
            self._proc = await native.spawn(
                [script], log_path=self.log_path, env=env, user=user, group=user, cwd=self.data_dir
            )
            hello = await self._wait_ready(started)
        except BaseException as exc:
            await self._cleanup(remove_log=False)
            self.lifecycle.to(State.FAILED)
            if isinstance(exc, BrokerStartError | BrokerUnavailable | ConfigError):
                raise
            if isinstance(exc, OSError):
                raise BrokerStartError(f"cannot launch RabbitMQ ({exc}); log: {self.log_path}") from exc
            raise
        self._version = hello.product
        log.info("%s node %s ready on %s:%d in %.1f s (log %s)", self._version, self.node_name,
                 self._bind_host, self.port, time.monotonic() - started, self.log_path)
        self.lifecycle.to(State.READY)
        login = "" if credentials_from_extra(self.options.extra) else "guest:guest@"  # else Lab.urls adds the user
        urls = {"amqp": f"amqp://{login}{self._bind_host}:{self.port}/"}
        if self._amqp1:  # the plugin listens on the 0-9-1 port (readiness stays proved over 0-9-1)
            urls["amqp1"] = f"amqp1://{login}{self._bind_host}:{self.port}"
        return urls

    async def _wait_ready(self, started: float) -> ConnectionStart:
        assert self._proc is not None and self._epmd is not None
        deadline = started + self.start_timeout_s
        last: BaseException | None = None
        while True:
            for name, proc in (("rabbitmq-server", self._proc), ("epmd", self._epmd)):
                if proc.returncode is not None:
                    self._fail(f"{name} exited with code {proc.returncode} after {time.monotonic() - started:.1f} s")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._fail(f"RabbitMQ did not answer AMQP within {self.start_timeout_s:g} s (last: {last})")
            try:
                return await probe_amqp(self._bind_host, self.port or 0, min(2.0, remaining))
            except AmqpWireError as exc:
                self._fail(f"something else answers on port {self.port}: {exc}")
            except (OSError, TimeoutError) as exc:
                last = exc
            await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))

    def _fail(self, why: str) -> None:
        raise BrokerStartError(
            f"RabbitMQ node {self.node_name} on {self._bind_host}:{self.port}: {why} "
            f"(start_timeout_s={self.start_timeout_s:g}; log: {self.log_path}); "
            f"log says: {log_excerpt(self.log_path or '')}"
        )

    async def stop(self) -> None:
        """Stop the node (SIGTERM, then SIGKILL after ``stop_timeout_s``) and remove its folder."""
        state = self.lifecycle.state
        if state is State.STOPPED:
            return
        if state in (State.NEW, State.FAILED):  # a failed start has already cleaned up
            self.lifecycle.to(State.STOPPED)
            return
        self.lifecycle.to(State.STOPPING)
        try:
            await self._cleanup(remove_log=True)
        finally:
            self.lifecycle.to(State.STOPPED)

    async def _cleanup(self, remove_log: bool) -> None:
        """Terminate the node, then its port mapper; remove the folder (and our own log if asked)."""
        try:
            for name, proc, grace in (("node", self._proc, self.stop_timeout_s), ("epmd", self._epmd, 2.0)):
                if proc is None:
                    continue
                try:
                    code = await native.terminate(proc, grace)
                    log.info("%s (pid %d) exited with code %s", name, proc.pid, code)
                except (OSError, TimeoutError) as exc:  # pragma: no cover - a process that survives SIGKILL
                    log.error("could not stop %s (pid %d): %s", name, proc.pid, exc)
        finally:  # even when cancelled: the parent-death signal ends the processes, the folder must go too
            if self.data_dir and os.path.exists(os.path.join(self.data_dir, KEEP_MARKER)):
                log.info("kept %s for the restart that follows", self.data_dir)
            elif self.data_dir:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            if remove_log and self._own_log and self.log_path:
                with contextlib.suppress(OSError):
                    os.remove(self.log_path)


def _positive(extra: dict[str, Any], key: str, default: float) -> float:
    value = extra.get(key, default)
    if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
        raise ConfigError(f"extra[{key!r}]={value!r} must be a positive number of seconds")
    return float(value)


def _other_free_port(taken: set[int]) -> int:
    """A free loopback port not in ``taken`` (bounded retries)."""
    for _ in range(20):
        port = free_port(LOOPBACK)
        if port not in taken:
            return port
    raise BrokerStartError(f"could not find a free port besides {sorted(taken)} on {LOOPBACK}")
