"""Credentials for a lab that binds beyond loopback, and the checks the hubs make (pure: no I/O but files).

A lab binds to 127.0.0.1 unless asked.  Binding to another address
(``Lab(host="0.0.0.0", allow_remote=True, credentials=Credentials(...))``)
needs credentials, and every broker then enforces them:

* RabbitMQ gets ``default_user``/``default_pass`` (no ``guest`` user at all);
* amqtt and Mosquitto get a password file and refuse anonymous clients;
* the WebSocket and SSE hubs want ``token`` on every request, as
  ``Authorization: Bearer TOKEN`` or ``?token=TOKEN``.

:meth:`Lab.urls <labkit.lab.Lab.urls>` then carries them (see
:func:`url_with_credentials`), so labkit's clients work unchanged.  See
docs/security.md.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit

from .errors import ConfigError

__all__ = [
    "Credentials",
    "MIN_PASSWORD_CHARS",
    "MIN_TOKEN_CHARS",
    "CREDENTIALS_FILE_KEY",
    "bearer_token",
    "token_matches",
    "url_with_credentials",
    "urls_with_credentials",
    "redact_url",
    "split_token",
    "credentials_from_extra",
    "without_secrets",
]

#: Shortest password accepted (characters).
MIN_PASSWORD_CHARS = 12
#: Shortest hub token accepted (characters); generated tokens have 32.
MIN_TOKEN_CHARS = 16
#: The ``BrokerOptions.extra`` key naming the file that holds a broker's credentials (JSON, mode 0600).
CREDENTIALS_FILE_KEY = "credentials_file"

_USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]+")
# Printable ASCII without space or '#' (rabbitmq.conf reads '#' as a comment, even mid-value): survives
# rabbitmq.conf, password files and URLs (percent-encoded).
_PASSWORD = re.compile(r"[!-\"$-~]+")


@dataclass(frozen=True, repr=False)
class Credentials:
    """Who may use a lab that binds beyond loopback.

    ``username`` (1-64 of letters, digits, ``_ . -``; not ``guest``) and
    ``password`` (at least :data:`MIN_PASSWORD_CHARS` printable ASCII
    characters, no spaces, no ``#``) for RabbitMQ, amqtt and Mosquitto; ``token``
    (URL-safe, at least :data:`MIN_TOKEN_CHARS` characters; generated with
    :func:`secrets.token_urlsafe` when None) for the WebSocket and SSE hubs.
    ``repr`` shows the username only.
    """

    username: str
    password: str
    token: str | None = None

    def __post_init__(self) -> None:
        name = self.username
        if not isinstance(name, str) or not _USERNAME.fullmatch(name):
            raise ConfigError(f"username={name!r} must be 1-64 letters, digits or _ . - (e.g. 'teacher')")
        if name.lower() == "guest":
            raise ConfigError("username='guest' is RabbitMQ's well-known default account; choose another name, "
                              "e.g. username='teacher'")
        password = self.password
        if not isinstance(password, str) or len(password) < MIN_PASSWORD_CHARS:
            size = len(password) if isinstance(password, str) else "no"
            raise ConfigError(f"password has {size} characters; use at least {MIN_PASSWORD_CHARS}, e.g. "
                              "password=secrets.token_urlsafe(16)")
        if not _PASSWORD.fullmatch(password):
            raise ConfigError("password must be printable ASCII without spaces or '#' (RabbitMQ's config file "
                              "reads '#' as a comment); e.g. password=secrets.token_urlsafe(16)")
        token = self.token
        if token is None:
            object.__setattr__(self, "token", secrets.token_urlsafe(24))
        elif not isinstance(token, str) or len(token) < MIN_TOKEN_CHARS or not _TOKEN.fullmatch(token):
            raise ConfigError(f"token must be at least {MIN_TOKEN_CHARS} URL-safe characters (letters, digits, _ -); "
                              "leave it out to have one generated")

    @classmethod
    def generate(cls, username: str = "teacher") -> Credentials:
        """Credentials with a random password (22 characters) and a random token."""
        return cls(username, secrets.token_urlsafe(16))

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***', token='***')"

    def to_dict(self) -> dict[str, str]:
        return {"username": self.username, "password": self.password, "token": str(self.token)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Credentials:
        try:
            return cls(str(data["username"]), str(data["password"]), data.get("token"))
        except (KeyError, TypeError):
            raise ConfigError("credentials must have a username and a password") from None

    def write(self, path: str | os.PathLike[str]) -> str:
        """Write the credentials to ``path`` as JSON readable by the owner only (mode 0600); return the path."""
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(self.to_dict(), handle)
        os.chmod(path, 0o600)
        return os.fspath(path)

    @classmethod
    def read(cls, path: str | os.PathLike[str]) -> Credentials:
        """Credentials written by :meth:`write`."""
        try:
            with open(path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"credentials file {os.fspath(path)!r} cannot be read ({exc}); start the broker again")
        return cls.from_dict(data)


def credentials_from_extra(extra: dict[str, Any]) -> Credentials | None:
    """The credentials a broker must enforce: ``extra["credentials_file"]`` or ``extra["credentials"]`` (a dict)."""
    path = extra.get(CREDENTIALS_FILE_KEY)
    if path:
        return Credentials.read(path)
    given = extra.get("credentials")
    if isinstance(given, Credentials):
        return given
    if isinstance(given, dict):
        return Credentials.from_dict(given)
    if given is not None:
        raise ConfigError(f"extra['credentials'] must be a dict of username, password and token, "
                          f"not {type(given).__name__}")
    return None


def without_secrets(extra: dict[str, Any]) -> dict[str, Any]:
    """``extra`` without the credentials keys (for brokers that turn every other key into settings)."""
    return {k: v for k, v in extra.items() if k not in (CREDENTIALS_FILE_KEY, "credentials")}


# ------------------------------------------------------------------ hub tokens
def bearer_token(authorization: str | None, query_token: str | None) -> str | None:
    """The token a request presents: ``Authorization: Bearer TOKEN`` first, else ``?token=TOKEN``."""
    if authorization:
        scheme, _, value = authorization.strip().partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
    return query_token or None


def token_matches(expected: str, presented: str | None) -> bool:
    """True when ``presented`` is ``expected``, compared in constant time."""
    if presented is None:
        return False
    return hmac.compare_digest(expected.encode("utf-8"), presented.encode("utf-8", "replace"))


# ------------------------------------------------------------------ URLs
def url_with_credentials(url: str, credentials: Credentials | None) -> str:
    """``url`` as a labkit client needs it with ``credentials``.

    ``mqtt://``, ``amqp://`` (and MQTT's ``ws://.../mqtt``) get ``user:password@``
    in place of any userinfo; the hubs' ``ws://`` and ``http://`` get
    ``?token=TOKEN``.  Unchanged when ``credentials`` is None.
    """
    if credentials is None:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"[{host}]" if ":" in host else host
    if parts.port:
        netloc += f":{parts.port}"
    is_hub = parts.scheme in ("http", "https") or (parts.scheme in ("ws", "wss") and parts.path in ("", "/"))
    if is_hub:
        query = [(k, v) for k, v in parse_qsl(parts.query) if k != "token"] + [("token", str(credentials.token))]
        return urlunsplit((parts.scheme, netloc, parts.path, urlencode(query), parts.fragment))
    userinfo = f"{quote(credentials.username, safe='')}:{quote(credentials.password, safe='')}@"
    return urlunsplit((parts.scheme, userinfo + netloc, parts.path, parts.query, parts.fragment))


def urls_with_credentials(urls: dict[str, str], credentials: Credentials | None) -> dict[str, str]:
    """Every URL of ``urls`` through :func:`url_with_credentials`."""
    return {key: url_with_credentials(url, credentials) for key, url in urls.items()}


def split_token(url: str) -> tuple[str, str | None]:
    """(``url`` without its ``token`` query parameter, the token or None)."""
    parts = urlsplit(url)
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    token = next((v for k, v in pairs if k == "token"), None)
    rest = urlencode([(k, v) for k, v in pairs if k != "token"])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), token or None


def redact_url(url: str) -> str:
    """``url`` safe to log or show: the password and any ``token`` replaced by ``***``."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user = unquote(parts.username or "")
            netloc = f"{quote(user, safe='')}:***@" + netloc.rpartition("@")[2]
        pairs = [(k, "***" if k == "token" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
        query = urlencode(pairs, safe="*")
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<a URL that cannot be parsed>"
