"""Safe defaults: loopback unless asked, and credentials that every broker enforces once asked.

The brokers bind 0.0.0.0 here (allowed in tests) but every client connects to
127.0.0.1 only.  One lab with credentials (amqtt, RabbitMQ, both hubs) and one
Mosquitto are started once for the module.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import quote

import psutil
import pytest

from labkit import AuthError, ConfigError, Credentials, Lab
from labkit.brokers.process import BrokerProcess
from labkit.net import check_host, connect_host
from labkit.protocols import client
from labkit.security import (
    bearer_token,
    redact_url,
    split_token,
    token_matches,
    url_with_credentials,
    urls_with_credentials,
)

from .support import require_broker, round_trip

# Characters that need care in URLs, rabbitmq.conf and password files.
PASSWORD = 'correct"horse\\battery:staple@1%$'
QUOTED = quote(PASSWORD, safe="")
WAIT_S = 10.0


# ------------------------------------------------------------------ pure parts
def test_credentials_are_validated_with_the_parameter_and_the_fix() -> None:
    with pytest.raises(ConfigError, match="username='guest'.*choose another name"):
        Credentials("guest", PASSWORD)
    with pytest.raises(ConfigError, match="username='a b'"):
        Credentials("a b", PASSWORD)
    with pytest.raises(ConfigError, match="password has 5 characters; use at least 12"):
        Credentials("teacher", "short")
    with pytest.raises(ConfigError, match="password must be printable ASCII without spaces"):
        Credentials("teacher", "with a space in it")
    with pytest.raises(ConfigError, match="or '#'"):
        Credentials("teacher", "hash#in-the-middle")
    with pytest.raises(ConfigError, match="token must be at least 16"):
        Credentials("teacher", PASSWORD, token="abc")


def test_credentials_hide_their_secrets_and_generate_a_token() -> None:
    creds = Credentials("teacher", PASSWORD)
    assert creds.token is not None and len(creds.token) >= 32
    assert Credentials("teacher", PASSWORD).token != creds.token
    shown = repr(creds) + str(creds)
    assert PASSWORD not in shown and creds.token not in shown and "teacher" in shown
    assert len(Credentials.generate().password) >= 12


def test_credentials_file_is_private(tmp_path) -> None:
    creds = Credentials("teacher", PASSWORD)
    path = creds.write(tmp_path / "c.json")
    assert (tmp_path / "c.json").stat().st_mode & 0o077 == 0
    assert Credentials.read(path) == creds


def test_urls_carry_the_credentials_and_redaction_hides_them() -> None:
    creds = Credentials("teacher", "p@ss:word/12345", token="t" * 20)
    assert url_with_credentials("mqtt://127.0.0.1:1883", creds) == "mqtt://teacher:p%40ss%3Aword%2F12345@127.0.0.1:1883"
    assert url_with_credentials("amqp://guest:guest@127.0.0.1:5672/", creds).startswith("amqp://teacher:p%40ss")
    assert url_with_credentials("ws://127.0.0.1:9/mqtt", creds).startswith("ws://teacher:")
    assert url_with_credentials("ws://127.0.0.1:9", creds) == "ws://127.0.0.1:9?token=" + "t" * 20
    assert url_with_credentials("http://127.0.0.1:9", creds) == "http://127.0.0.1:9?token=" + "t" * 20
    assert url_with_credentials("http://127.0.0.1:9", None) == "http://127.0.0.1:9"
    assert split_token("http://127.0.0.1:9?token=abc") == ("http://127.0.0.1:9", "abc")
    for url in urls_with_credentials({"a": "amqp://127.0.0.1:1/", "s": "http://127.0.0.1:2"}, creds).values():
        shown = redact_url(url)
        assert "p%40ss" not in shown and "t" * 20 not in shown and "***" in shown


def test_tokens_are_read_from_the_header_or_the_query_and_compared_exactly() -> None:
    assert bearer_token("Bearer abc", None) == "abc"
    assert bearer_token("bearer  abc ", "zzz") == "abc"
    assert bearer_token(None, "q") == "q"
    assert bearer_token("Basic abc", None) is None
    assert token_matches("secret-token", "secret-token")
    assert not token_matches("secret-token", "secret-tokem")
    assert not token_matches("secret-token", None)
    assert not token_matches("secret-token", "")


def test_check_host_explains_what_is_needed() -> None:
    assert check_host("127.0.0.1") == "127.0.0.1"
    with pytest.raises(ConfigError, match="host='0.0.0.0'.*allow_remote=True and credentials=labkit.Credentials"):
        check_host("0.0.0.0")
    with pytest.raises(ConfigError, match="host='0.0.0.0'.*without a password.*credentials=labkit.Credentials"):
        check_host("0.0.0.0", allow_remote=True)
    assert check_host("0.0.0.0", True, Credentials("teacher", PASSWORD)) == "0.0.0.0"
    assert connect_host("0.0.0.0") == "127.0.0.1" and connect_host("10.1.2.3") == "10.1.2.3"


@pytest.mark.parametrize("kind", ["amqtt", "mosquitto", "rabbitmq", "ws", "sse"])
def test_no_credentials_means_config_error_before_anything_starts(kind: str) -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    with pytest.raises(ConfigError, match="credentials=labkit.Credentials"):
        BrokerProcess(kind, host="0.0.0.0", allow_remote=True)
    with pytest.raises(ConfigError, match="not a loopback address"):
        BrokerProcess(kind, host="0.0.0.0", credentials=Credentials("teacher", PASSWORD))
    protocol = {"amqtt": "mqtt", "mosquitto": "mqtt", "rabbitmq": "amqp"}.get(kind, kind)
    with pytest.raises(ConfigError, match="credentials=labkit.Credentials"):
        Lab([protocol], host="0.0.0.0", allow_remote=True, use_env=False)
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


def test_the_tcp_relay_stays_on_loopback_even_with_credentials() -> None:
    with pytest.raises(ConfigError, match="raw TCP relay has no authentication.*host='127.0.0.1'"):
        BrokerProcess("tcp", host="0.0.0.0", allow_remote=True, credentials=Credentials("teacher", PASSWORD))


# ------------------------------------------------------------------ real brokers
@pytest.fixture(scope="module")
def creds() -> Credentials:
    return Credentials("teacher", PASSWORD)


@pytest.fixture(scope="module")
def secured_lab(creds: Credentials):
    """amqtt, RabbitMQ and both hubs on 0.0.0.0 with credentials, started together."""
    require_broker("rabbitmq")
    with Lab(host="0.0.0.0", allow_remote=True, credentials=creds, use_env=False, start_timeout=60) as lab:
        yield lab


@pytest.fixture(scope="module")
def secured_mosquitto(creds: Credentials):
    require_broker("mosquitto")
    with BrokerProcess("mosquitto", host="0.0.0.0", allow_remote=True, credentials=creds) as broker:
        yield broker


def _listening(pid: int) -> set[str]:
    """Addresses the process ``pid`` and its children listen on."""
    root = psutil.Process(pid)
    found = set()
    for proc in [root, *root.children(recursive=True)]:
        for conn in proc.net_connections(kind="tcp"):
            if conn.status == psutil.CONN_LISTEN:
                found.add(conn.laddr.ip)
    return found


async def _round_trip(protocol: str, url: str) -> bytes:
    return await round_trip(protocol, url, b"hello", WAIT_S)


async def _refused(protocol: str, url: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        async with asyncio.timeout(WAIT_S * 2):
            async with client(protocol, url, timeout=WAIT_S) as c:
                await c.subscribe(f"sec/{uuid.uuid4().hex[:8]}")
    return caught.value


def test_the_lab_binds_everywhere_and_its_urls_name_loopback_with_credentials(secured_lab: Lab, creds) -> None:
    urls = secured_lab.urls
    assert urls["mqtt"].startswith(f"mqtt://teacher:{QUOTED}@127.0.0.1:")
    assert urls["amqp"].startswith(f"amqp://teacher:{QUOTED}@127.0.0.1:")
    assert urls["ws"].endswith(f"?token={creds.token}") and urls["sse"].endswith(f"?token={creds.token}")
    for protocol in ("mqtt", "ws", "sse"):
        assert "0.0.0.0" in _listening(secured_lab.brokers[protocol].pid), protocol
    described = str(secured_lab.describe()) + repr(secured_lab)
    assert QUOTED not in described and PASSWORD not in described and str(creds.token) not in described


@pytest.mark.parametrize("protocol", ["mqtt", "amqp", "ws", "sse"])
async def test_a_client_with_the_lab_url_works(secured_lab: Lab, protocol: str) -> None:
    assert await _round_trip(protocol, secured_lab.url(protocol)) == b"hello"


async def test_mqtt_over_websockets_with_credentials_works(secured_lab: Lab) -> None:
    assert await _round_trip("mqtt", secured_lab.urls["mqtt_ws"]) == b"hello"


@pytest.mark.parametrize("protocol", ["mqtt", "amqp"])
async def test_missing_or_wrong_password_is_an_auth_error(secured_lab: Lab, protocol: str) -> None:
    plain = secured_lab.brokers[protocol].urls[protocol]  # what the broker reports: no (or guest) credentials
    error = await _refused(protocol, plain)
    assert "user" in str(error) and "lab.urls" in str(error)
    wrong = secured_lab.url(protocol).replace(QUOTED, "wrong-password-123")
    error = await _refused(protocol, wrong)
    assert "wrong-password-123" not in str(error)


@pytest.mark.parametrize("protocol", ["ws", "sse"])
async def test_missing_or_wrong_token_is_an_auth_error(secured_lab: Lab, protocol: str, creds) -> None:
    plain = secured_lab.brokers[protocol].urls[protocol]
    error = await _refused(protocol, plain)
    assert "no token" in str(error) and "HTTP 401" in str(error)
    wrong = f"{plain}?token={'x' * 32}"
    error = await _refused(protocol, wrong)
    assert "wrong token" in str(error) and "x" * 32 not in str(error)


async def _http_status(url: str, headers: dict[str, str] | None = None) -> int:
    import aiohttp

    async with aiohttp.ClientSession(trust_env=False) as session:
        async with session.get(url, headers=headers, timeout=aiohttp.ClientTimeout(total=WAIT_S)) as resp:
            await resp.read()
            return resp.status


async def test_sse_hub_takes_the_token_in_the_header_or_the_query_and_serves_the_dashboard(secured_lab: Lab,
                                                                                             creds) -> None:
    from labkit.dashboard.page import page_url

    base = secured_lab.brokers["sse"].urls["sse"]
    assert await _http_status(f"{base}/state/x") == 401
    assert await _http_status(f"{base}/state/x", {"Authorization": f"Bearer {creds.token}"}) == 200
    assert await _http_status(f"{base}/state/x?token={creds.token}") == 200
    assert await _http_status(f"{base}/dashboard") == 401
    page = page_url(secured_lab.url("sse"), "dashboard/fleet")
    assert page == f"{base}/dashboard?topic=dashboard/fleet&token={creds.token}"
    assert await _http_status(page) == 200


async def test_mosquitto_enforces_its_password_file(secured_mosquitto: BrokerProcess, creds) -> None:
    assert "0.0.0.0" in _listening(secured_mosquitto.pid)
    urls = urls_with_credentials(secured_mosquitto.urls, creds)
    assert await _round_trip("mqtt", urls["mqtt"]) == b"hello"
    assert await _round_trip("mqtt", urls["mqtt_ws"]) == b"hello"
    error = await _refused("mqtt", secured_mosquitto.urls["mqtt"])
    assert "without a user name" in str(error)
    await _refused("mqtt", urls["mqtt"].replace(QUOTED, "wrong-password-123"))


async def test_a_restarted_hub_still_enforces_the_same_token(creds) -> None:
    broker = await asyncio.to_thread(BrokerProcess("ws", credentials=creds).start)
    try:
        url = url_with_credentials(broker.urls["ws"], creds)
        await asyncio.to_thread(broker.restart)
        assert await _round_trip("ws", url) == b"hello"
        await _refused("ws", broker.urls["ws"])
    finally:
        await asyncio.to_thread(broker.stop)


def test_labkit_up_takes_the_password_from_the_environment_only(monkeypatch) -> None:
    from labkit.cli import _parser, _remote_options

    args = _parser().parse_args(["up", "--host", "0.0.0.0", "--allow-remote", "--user", "teacher"])
    monkeypatch.setenv("LABKIT_PASSWORD", PASSWORD)
    options = _remote_options(args)
    assert options["host"] == "0.0.0.0" and options["allow_remote"] is True
    assert options["credentials"].username == "teacher" and options["credentials"].password == PASSWORD
    monkeypatch.delenv("LABKIT_PASSWORD")
    assert len(_remote_options(args)["credentials"].password) >= 12  # generated
    assert "credentials" not in _remote_options(_parser().parse_args(["up"]))
    with pytest.raises(SystemExit):
        _parser().parse_args(["up", "--password", "x"])
