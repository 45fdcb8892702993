"""Frame traces of one message through the session lab's real brokers, captured at the socket.

Each test checks the exact frames the protocol requires for the one message
(the ``message`` phase), and that the table accounts for every captured byte.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from labkit.errors import ConfigError  # noqa: E402
from labkit.protocols import client  # noqa: E402
from labkit.trace import Capture, Chunk, decode_chunks, trace_message  # noqa: E402
from labkit.wire.mqtt import Publish  # noqa: E402
from labkit.viz import chart_data, sequence_diagram  # noqa: E402

TO, FROM = "→ broker", "← broker"


def _accounted(df: pd.DataFrame) -> None:
    """No undecoded bytes, and the rows' bytes add up to what the relay captured, per connection and direction."""
    assert (df["frame"] != "undecoded").all(), df[df["frame"] == "undecoded"].to_string()
    sums = df.groupby(["connection", "direction"])["bytes"].sum()
    decoded = {f"{conn} {direction}": int(n) for (conn, direction), n in sums.items()}
    assert decoded == df.attrs["captured_bytes"]
    assert not df.attrs["truncated"]
    assert df["t_ms"].is_monotonic_increasing and df["t_ms"].iloc[0] == 0.0


def _leg(df: pd.DataFrame, connection: str, frames: set[str] | None = None) -> list[tuple[str, str]]:
    rows = df[(df["phase"] == "message") & (df["connection"] == connection)]
    if frames is not None:
        rows = rows[rows["frame"].isin(frames)]
    return list(zip(rows["direction"], rows["frame"]))


@pytest.mark.parametrize("qos", [0, 1, 2])
async def test_mqtt_qos_handshakes(lab, qos: int) -> None:
    df = await trace_message("mqtt", lab, qos=qos, payload=b"frame-me")
    _accounted(df)
    publisher = {0: [(TO, "PUBLISH")], 1: [(TO, "PUBLISH"), (FROM, "PUBACK")],
                 2: [(TO, "PUBLISH"), (FROM, "PUBREC"), (TO, "PUBREL"), (FROM, "PUBCOMP")]}[qos]
    subscriber = {0: [(FROM, "PUBLISH")], 1: [(FROM, "PUBLISH"), (TO, "PUBACK")],
                  2: [(FROM, "PUBLISH"), (TO, "PUBREC"), (FROM, "PUBREL"), (TO, "PUBCOMP")]}[qos]
    assert _leg(df, "publisher") == publisher
    assert _leg(df, "subscriber") == subscriber
    publishes = df[(df["phase"] == "message") & (df["frame"] == "PUBLISH")]
    assert publishes["detail"].str.contains(f"qos={qos}").all()
    assert publishes["detail"].str.contains("'frame-me'").all()
    # A PUBLISH is 2 bytes of fixed header + 2 + topic + (2-byte packet id at QoS > 0) + payload.
    topic = df.attrs["topic"]
    assert set(publishes["bytes"]) == {2 + 2 + len(topic) + (2 if qos else 0) + len(b"frame-me")}
    assert (df[df["frame"].isin(["PUBACK", "PUBREC", "PUBREL", "PUBCOMP"])]["bytes"] == 4).all()
    assert list(df[df["phase"] == "connect"]["frame"]) == ["CONNECT", "CONNACK"] * 2
    assert list(df[df["phase"] == "subscribe"]["frame"]) == ["SUBSCRIBE", "SUBACK"]


@pytest.mark.parametrize("confirms", [True, False])
async def test_amqp_publish_deliver_and_confirms(lab, confirms: bool) -> None:
    df = await trace_message("amqp", lab, confirms=confirms)
    _accounted(df)
    content = ["basic.publish", "content-header", "content-body"]
    assert _leg(df, "publisher") == [(TO, f) for f in content] + ([(FROM, "basic.ack")] if confirms else [])
    assert _leg(df, "subscriber") == [(FROM, "basic.deliver"), (FROM, "content-header"), (FROM, "content-body"),
                                      (TO, "basic.ack")]
    message = df[df["phase"] == "message"]
    assert message[message["frame"] == "basic.publish"]["detail"].str.contains(f"routing_key={df.attrs['topic']}").all()
    assert message[message["frame"] == "content-header"]["detail"].str.startswith("body_size=13").all()
    setup = df[(df["phase"] == "connect") & (df["connection"] == "publisher")]["frame"]
    assert ("confirm.select" in set(setup)) is confirms
    assert list(df[df["phase"] == "connect"]["frame"])[:2] == ["protocol-header", "connection.start"]


async def test_ws_masked_in_unmasked_out(lab) -> None:
    df = await trace_message("ws", lab, payload=b"over the socket")
    _accounted(df)
    sent = df[(df["phase"] == "message") & (df["frame"] == "text frame")]
    assert list(zip(sent["connection"], sent["direction"])) == [("publisher", TO), ("subscriber", FROM)]
    assert sent["detail"].iloc[0].startswith("opcode 1, FIN, masked, 15 B payload")
    assert sent["detail"].iloc[1].startswith("opcode 1, FIN, unmasked, 15 B payload")
    assert list(sent["bytes"]) == [2 + 4 + 15, 2 + 15]  # the mask key costs the client 4 bytes
    heads = df[df["frame"].str.startswith(("GET /ws/", "HTTP 101"))]
    assert len(heads) == 2 * df["conn"].nunique()  # every connection opened with the upgrade handshake


async def test_sse_post_in_data_line_out(lab) -> None:
    df = await trace_message("sse", lab, payload=b"to every browser")
    _accounted(df)
    pub = df[(df["phase"] == "message") & (df["connection"] == "publisher")]
    assert list(zip(pub["direction"], pub["frame"])) == [
        (TO, f"POST /sse/{df.attrs['topic']}"), (TO, "body"), (FROM, "HTTP 200 OK"), (FROM, "body")]
    assert pub["detail"].iloc[1] == "to every browser"
    sub = df[(df["phase"] == "message") & (df["connection"] == "subscriber")]
    lines = list(sub["frame"])
    assert "data:" in lines and lines[-1] == "blank line"
    assert sub[sub["frame"] == "data:"]["detail"].tolist() == ["to every browser"]
    assert sub["detail"].iloc[-1].startswith("dispatches the event")
    assert (sub["direction"] == FROM).all()


async def test_sequence_diagram_draws_one_arrow_per_frame(lab) -> None:
    df = await trace_message("mqtt", lab, qos=1)
    ax = sequence_diagram(df)
    drawn = chart_data(ax)
    assert list(drawn["frame"]) == ["PUBLISH", "PUBACK", "PUBLISH", "PUBACK"]
    assert len([t for t in ax.texts if t.get_text().endswith(" B)")]) == 4
    assert "MQTT qos=1" in ax.get_title()
    plt.close(ax.figure)
    with pytest.raises(ConfigError, match="phase='nope'"):
        sequence_diagram(df, phase="nope")
    everything = chart_data(sequence_diagram(df, phase=None))
    assert len(everything) == len(df)
    plt.close("all")


async def test_capture_limits_stop_recording_not_relaying(lab) -> None:
    url = lab.url("mqtt")
    async with Capture.for_url(url, max_chunks=1) as cap:
        async with client("mqtt", cap.url_for("publisher", url)) as c:
            await (await c.publish("trace/limit", b"x", qos=1)).wait(10)
    assert cap.truncated and len(cap.chunks) == 1 and cap.chunks[0].direction == "up"


async def test_bad_options_are_refused(lab) -> None:
    with pytest.raises(ConfigError, match="qos=3"):
        await trace_message("mqtt", lab, qos=3)
    with pytest.raises(ConfigError, match="cannot be traced"):
        await trace_message("tcp", lab)
    with pytest.raises(ConfigError, match="unknown option"):
        await trace_message("ws", lab, qos=1)


def test_undecodable_bytes_become_one_undecoded_row() -> None:
    good = Publish("t/1", b"x").encode()
    chunks = [Chunk(1, "publisher", "up", 1_000_000, good), Chunk(1, "publisher", "up", 2_000_000, b"\xf0\x00junk"),
              Chunk(1, "publisher", "up", 3_000_000, b"more"), Chunk(2, "subscriber", "down", 4_000_000, good[:3])]
    rows = decode_chunks("mqtt", chunks, [(0, "connect"), (2_500_000, "message")])
    assert [(r["connection"], r["frame"], r["bytes"], r["t_ms"], r["phase"]) for r in rows] == [
        ("publisher", "PUBLISH", len(good), 0.0, "connect"),
        ("publisher", "undecoded", 10, 1.0, "connect"),
        ("subscriber", "undecoded", 3, 3.0, "message"),
    ]
    assert "reserved packet type 15" in rows[1]["detail"] and rows[2]["detail"] == "the stream ended inside a frame"
