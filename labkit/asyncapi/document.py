"""An AsyncAPI 3.0 document read into the parts the lab can run (pure: no I/O beyond reading the file).

:func:`parse` checks the version, follows local ``$ref``\\ s and keeps the
supported subset (see docs/asyncapi.md, "## Import"): channels with an
address and parameters, their messages with JSON Schema payloads, send and
receive operations, and the ``mqtt``, ``amqp``, ``ws`` and ``http``
bindings.  Anything else the lab cannot honour raises
:class:`AsyncAPIError`, whose message starts with the JSON pointer of the
place in the document (``#/channels/telemetry/messages/position``) and
says what is wrong and how to fix it.
"""

from __future__ import annotations

import copy
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote

from ..errors import ConfigError

log = logging.getLogger(__name__)

__all__ = ["AsyncAPIError", "ApiSpec", "shipped", "ChannelSpec", "MessageSpec", "OperationSpec", "load", "parse",
           "resolve", "pointer", "LAB_PROTOCOLS", "JSON_TYPES"]

#: AsyncAPI server protocols -> the lab broker that plays them.
LAB_PROTOCOLS = {"mqtt": "mqtt", "amqp": "amqp", "ws": "ws", "http": "sse", "https": "sse", "sse": "sse"}
#: Binding key (as written under ``bindings``) of each lab protocol.
BINDING_KEYS = {"mqtt": "mqtt", "amqp": "amqp", "ws": "ws", "sse": "http"}
#: Content types whose payloads are JSON (the only kind the import generates).
JSON_TYPES = ("application/json", "text/json")
#: Schema formats read as JSON Schema (AsyncAPI's own schema is a superset of draft 07).
SCHEMA_FORMATS = ("application/vnd.aai.asyncapi", "application/schema+json")
#: Longest chain of ``$ref`` followed before calling it a loop.
MAX_REF_HOPS = 32


class AsyncAPIError(ConfigError):
    """A document the import cannot run; ``pointer`` is the JSON pointer of the place at fault."""

    def __init__(self, at: str, problem: str) -> None:
        self.pointer = at
        super().__init__(f"{at}: {problem}")


def pointer(*parts: str | int) -> str:
    """A JSON pointer (``#/a/b``) from its parts, escaping ``~`` and ``/`` as RFC 6901 says."""
    return "#" + "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def _split(ref: str) -> list[str]:
    body = unquote(ref[1:])
    if body == "":
        return []
    if not body.startswith("/"):
        raise ValueError("a local $ref is '#' followed by a JSON pointer such as '#/components/schemas/Reading'")
    return [p.replace("~1", "/").replace("~0", "~") for p in body[1:].split("/")]


def resolve(root: dict[str, Any], node: Any, at: str) -> tuple[Any, str]:
    """``node`` with every ``$ref`` at its top followed inside ``root``; returns (target, its pointer).

    Only local references (``#/...``) are followed; a reference elsewhere,
    one that points at nothing, or a loop raises :class:`AsyncAPIError` at ``at``.
    """
    here = at
    for _ in range(MAX_REF_HOPS):
        if not (isinstance(node, dict) and "$ref" in node):
            return node, here
        ref = node["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#"):
            raise AsyncAPIError(here, f"$ref {ref!r} points outside this document; the import follows local "
                                "references only ('#/components/...'): copy the target into the document")
        try:
            parts = _split(ref)
        except ValueError as exc:
            raise AsyncAPIError(here, f"$ref {ref!r} is malformed: {exc}") from None
        target: Any = root
        walked: list[str] = []
        for part in parts:
            if isinstance(target, dict) and part in target:
                target = target[part]
            elif isinstance(target, list) and part.isdigit() and int(part) < len(target):
                target = target[int(part)]
            else:
                raise AsyncAPIError(here, f"$ref {ref!r} does not resolve: there is no {part!r} under "
                                    f"{pointer(*walked)}; fix the name or add it there")
            walked.append(part)
        node, here = target, pointer(*parts)
    raise AsyncAPIError(at, f"$ref chain longer than {MAX_REF_HOPS} hops (a loop?); point at the target directly")


def load(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The document as a dict: a dict (deep-copied), or the path of a ``.json``, ``.yaml`` or ``.yml`` file."""
    if isinstance(source, dict):
        return copy.deepcopy(source)
    if not isinstance(source, (str, Path)):
        raise ConfigError(f"document={source!r} must be a dict or the path of an AsyncAPI file (.yaml or .json)")
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"AsyncAPI file {str(path)!r} not found; give the path of a .yaml or .json document")
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{path}: not valid JSON ({exc}); check the syntax") from None
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:  # it names the line and column
            raise ConfigError(f"{path}: not valid YAML ({' '.join(str(exc).split())}); check the syntax") from None
    if not isinstance(data, dict):
        raise AsyncAPIError("#", f"{path} holds a {type(data).__name__}, not an AsyncAPI document (an object)")
    return data


def shipped(name: str) -> Path:
    """The path of a document shipped in ``data/asyncapi/`` (``"smart_building"``, ``"market_data"``...)."""
    folder = Path(__file__).resolve().parents[2] / "data" / "asyncapi"
    path = folder / f"{name.removesuffix('.yaml')}.yaml"
    if not path.is_file():
        have = ", ".join(sorted(p.stem for p in folder.glob("*.yaml"))) or "none"
        raise ConfigError(f"no shipped AsyncAPI document {name!r}; choose one of {have}")
    return path


@dataclass
class MessageSpec:
    """One message: its key in the channel, the pointer of its payload schema, and its bindings."""

    key: str
    name: str
    pointer: str
    schema: Any
    schema_pointer: str
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChannelSpec:
    """One channel: its address (``{param}`` placeholders kept), the lab protocol and its bindings."""

    id: str
    address: str
    pointer: str
    protocol: str
    server: str
    parameters: dict[str, dict[str, Any]]
    messages: dict[str, MessageSpec]
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass
class OperationSpec:
    """One operation: ``send`` or ``receive`` on a channel, with the messages it carries."""

    id: str
    action: str
    channel: ChannelSpec
    messages: list[MessageSpec]
    pointer: str
    bindings: dict[str, Any] = field(default_factory=dict)


@dataclass
class ApiSpec:
    """What :func:`parse` keeps of a document: title, version, channels and operations (in document order)."""

    title: str
    version: str
    channels: dict[str, ChannelSpec]
    operations: dict[str, OperationSpec]
    root: dict[str, Any]


def _ref(doc: dict[str, Any], node: Any, at: str, what: str) -> list[str]:
    """The parts of the pointer a ``$ref`` names (one hop; the target must exist)."""
    if not (isinstance(node, dict) and isinstance(node.get("$ref"), str)):
        raise AsyncAPIError(at, f"must be a $ref to {what}, such as {{$ref: '{what}NAME'}}")
    resolve(doc, node, at)  # the whole chain must resolve
    try:
        return _split(node["$ref"])
    except ValueError as exc:
        raise AsyncAPIError(at, f"$ref {node['$ref']!r} is malformed: {exc}") from None


def _obj(value: Any, at: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise AsyncAPIError(at, f"{what} must be an object, not {type(value).__name__}")
    return value


def _check_version(doc: dict[str, Any]) -> None:
    version = doc.get("asyncapi")
    if version is None:
        raise AsyncAPIError("#/asyncapi", "missing: this is not an AsyncAPI document; it must start with "
                            "'asyncapi: 3.0.0'")
    if not isinstance(version, str) or not version.startswith("3.0"):
        hint = (" (AsyncAPI 2; convert it with `asyncapi convert` from the AsyncAPI CLI)"
                if str(version).startswith("2.") else "")
        raise AsyncAPIError("#/asyncapi", f"version {version!r}{hint}; the import reads AsyncAPI 3.0 documents "
                            "('asyncapi: 3.0.0')")
    info = _obj(doc.get("info"), "#/info", "info")
    for key in ("title", "version"):
        if not isinstance(info.get(key), str) or not info[key]:
            raise AsyncAPIError(f"#/info/{key}", f"missing; AsyncAPI 3.0 requires info.{key} (text)")


def _content_type(doc: dict[str, Any], message: dict[str, Any], at: str) -> None:
    kind = message.get("contentType", doc.get("defaultContentType", "application/json"))
    base = str(kind).split(";")[0].strip().lower()
    if base not in JSON_TYPES and not base.endswith("+json"):
        raise AsyncAPIError(f"{at}/contentType", f"content type {kind!r}: the import generates JSON payloads only; "
                            "use application/json (or remove contentType)")


def _payload(doc: dict[str, Any], message: dict[str, Any], at: str) -> tuple[Any, str]:
    if "payload" not in message:
        return {}, f"{at}/payload"  # no payload schema: any JSON value; the import sends an empty object
    payload, where = resolve(doc, message["payload"], f"{at}/payload")
    if isinstance(payload, dict) and "schemaFormat" in payload:
        fmt = str(payload["schemaFormat"])
        if not fmt.startswith(SCHEMA_FORMATS):
            raise AsyncAPIError(f"{where}/schemaFormat", f"schema format {fmt!r} is not supported; the import reads "
                                "JSON Schema (AsyncAPI schema or application/schema+json;version=draft-07)")
        if "schema" not in payload:
            raise AsyncAPIError(where, "a multi-format payload needs a 'schema' member")
        return resolve(doc, payload["schema"], f"{where}/schema")
    if not isinstance(payload, (dict, bool)):
        raise AsyncAPIError(where, f"payload must be a JSON Schema (an object), not {type(payload).__name__}")
    return payload, where


def _messages(doc: dict[str, Any], channel: dict[str, Any], at: str) -> dict[str, MessageSpec]:
    out: dict[str, MessageSpec] = {}
    raw = _obj(channel.get("messages", {}), f"{at}/messages", "messages")
    for key, item in raw.items():
        here = f"{at}/messages/{key}"
        message, where = resolve(doc, item, here)
        message = _obj(message, where, "a message")
        if "traits" in message:
            raise AsyncAPIError(f"{where}/traits", "message traits are not supported by the import; merge them "
                                "into the message")
        _content_type(doc, message, where)
        schema, schema_at = _payload(doc, message, where)
        bindings, _ = resolve(doc, message.get("bindings", {}), f"{where}/bindings")
        out[key] = MessageSpec(key, str(message.get("name", key)), here, schema, schema_at,
                               _obj(bindings, f"{where}/bindings", "bindings"))
    return out


def _servers(doc: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Server name -> (its protocol as written, the pointer of its protocol)."""
    out = {}
    servers = _obj(doc.get("servers", {}), "#/servers", "servers")
    for name, item in servers.items():
        server, where = resolve(doc, item, pointer("servers", name))
        server = _obj(server, where, "a server")
        out[name] = (str(server.get("protocol", "")).lower(), f"{where}/protocol")
    return out


def _protocol(doc: dict[str, Any], channel: dict[str, Any], at: str, servers: dict[str, tuple[str, str]]
              ) -> tuple[str, str]:
    """(lab protocol, server name) of a channel: its first server (or the document's) the lab can play."""
    names = list(servers)
    if "servers" in channel:
        names = []
        for i, ref in enumerate(channel["servers"] or []):
            parts = _ref(doc, ref, f"{at}/servers/{i}", "#/servers/")
            if len(parts) != 2 or parts[0] != "servers":
                raise AsyncAPIError(f"{at}/servers/{i}", "must be a $ref to a server under #/servers")
            names.append(parts[1])
    if not names:
        bound = [p for p, key in BINDING_KEYS.items() if key in channel.get("bindings", {})]
        if bound:
            return bound[0], ""
        raise AsyncAPIError(at, "no server says which protocol this channel uses; add a server with protocol "
                            "mqtt, amqp, ws or http under #/servers")
    for name in names:
        proto = servers[name][0]
        if proto in LAB_PROTOCOLS:
            return LAB_PROTOCOLS[proto], name
    first = names[0]
    raise AsyncAPIError(servers[first][1], f"protocol {servers[first][0]!r} is not one the lab runs; use mqtt, "
                        "amqp, ws or http (SSE)")


def _channel(doc: dict[str, Any], key: str, item: Any, servers: dict[str, tuple[str, str]]) -> ChannelSpec:
    at = pointer("channels", key)
    channel, where = resolve(doc, item, at)
    channel = _obj(channel, where, "a channel")
    address = channel.get("address")
    if address is None:
        address = key  # AsyncAPI: null means dynamic or unknown; the lab uses the channel's key
    if not isinstance(address, str) or not address:
        raise AsyncAPIError(f"{where}/address", f"address {address!r} must be text such as 'home/{{room}}/temp'")
    params: dict[str, dict[str, Any]] = {}
    raw_params = _obj(channel.get("parameters", {}), f"{where}/parameters", "parameters")
    for name, p in raw_params.items():
        value, p_at = resolve(doc, p, f"{where}/parameters/{name}")
        params[name] = {**_obj(value, p_at, "a parameter"), "pointer": p_at}
    for name in _placeholders(address):
        if name not in params:
            raise AsyncAPIError(f"{where}/address", f"placeholder {{{name}}} has no entry under "
                                f"{where}/parameters; declare it there")
    protocol, server = _protocol(doc, channel, where, servers)
    bindings, b_at = resolve(doc, channel.get("bindings", {}), f"{where}/bindings")
    return ChannelSpec(key, address, at, protocol, server, params, _messages(doc, channel, where),
                       _obj(bindings, b_at, "bindings"))


def _placeholders(address: str) -> list[str]:
    """The ``{name}`` placeholders of an address, in order."""
    out, rest = [], address
    for _ in range(len(address)):
        start = rest.find("{")
        if start < 0:
            break
        end = rest.find("}", start)
        if end < 0:
            break
        out.append(rest[start + 1:end])
        rest = rest[end + 1:]
    return out


def _operation(doc: dict[str, Any], key: str, item: Any, channels: dict[str, ChannelSpec]) -> OperationSpec:
    at = pointer("operations", key)
    op, where = resolve(doc, item, at)
    op = _obj(op, where, "an operation")
    action = op.get("action")
    if action not in ("send", "receive"):
        raise AsyncAPIError(f"{where}/action", f"action {action!r} must be 'send' or 'receive'")
    for unsupported in ("reply", "traits"):
        if unsupported in op:
            raise AsyncAPIError(f"{where}/{unsupported}", f"operation {unsupported} is not supported by the import; "
                                "remove it (or model the reply as its own channel and operations)")
    if "channel" not in op:
        raise AsyncAPIError(f"{where}/channel", "missing; an operation needs channel: {$ref: '#/channels/NAME'}")
    parts = _ref(doc, op["channel"], f"{where}/channel", "#/channels/")
    if len(parts) != 2 or parts[0] != "channels":
        raise AsyncAPIError(f"{where}/channel", f"points at {pointer(*parts)}; it must be a $ref to a channel "
                            "under #/channels")
    channel = channels[parts[1]]
    chosen: list[MessageSpec] = []
    for i, ref in enumerate(op.get("messages") or []):
        m_at = f"{where}/messages/{i}"
        bits = _ref(doc, ref, m_at, f"{channel.pointer}/messages/")
        target = pointer(*bits)
        if len(bits) != 4 or bits[0] != "channels" or bits[2] != "messages":
            raise AsyncAPIError(m_at, f"points at {target}; it must name a message of its channel "
                                f"({channel.pointer}/messages/NAME)")
        if bits[1] != channel.id:
            raise AsyncAPIError(m_at, f"names a message of channel {bits[1]!r}, but the operation is on "
                                f"{channel.id!r}; use {channel.pointer}/messages/NAME")
        chosen.append(channel.messages[bits[3]])
    if not chosen:
        chosen = list(channel.messages.values())
    if not chosen:
        raise AsyncAPIError(f"{channel.pointer}/messages", f"channel {channel.id!r} has no messages, so operation "
                            f"{key!r} has nothing to {action}; add a message with a payload schema")
    bindings, b_at = resolve(doc, op.get("bindings", {}), f"{where}/bindings")
    return OperationSpec(key, action, channel, chosen, at, _obj(bindings, b_at, "bindings"))


def parse(source: str | Path | dict[str, Any]) -> ApiSpec:
    """Read an AsyncAPI 3.0 document (dict or file) into an :class:`ApiSpec`; AsyncAPIError if unsupported."""
    doc = load(source)
    _check_version(doc)
    servers = _servers(doc)
    raw_channels = _obj(doc.get("channels", {}), "#/channels", "channels")
    channels = {key: _channel(doc, key, item, servers) for key, item in raw_channels.items()}
    raw_ops = _obj(doc.get("operations", {}), "#/operations", "operations")
    operations = {key: _operation(doc, key, item, channels) for key, item in raw_ops.items()}
    if not operations:
        raise AsyncAPIError("#/operations", "the document has no operations; add at least one send or receive "
                            "operation on a channel")
    info = doc["info"]
    log.debug("parsed %r: %d channels, %d operations", info["title"], len(channels), len(operations))
    return ApiSpec(str(info["title"]), str(info["version"]), channels, operations, doc)
