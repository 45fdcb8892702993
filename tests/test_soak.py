"""The soak's machinery on the real brokers, briefly: ~15 s of load instead of 10 minutes.

Checks that the sampler saw every broker process, that each protocol's counts
add up and that every verdict is computed.  Whether the verdicts pass is the
soak's finding (benchmarks/RESULTS.md), not this test's.
"""

from __future__ import annotations

import pytest

from benchmarks import soak_report
from benchmarks.soak import PROTOCOLS, SoakSettings, soak
from labkit.errors import ConfigError

pytestmark = [pytest.mark.integration, pytest.mark.rabbitmq]

#: 18 s of load: a 4 s warm-up, then ~14 s of soak in windows of at most 5 s, sampled every 2 s.
QUICK = SoakSettings(minutes=0.3, window_s=5.0, sample_s=2.0, warmup_s=4.0)


@pytest.fixture(scope="module")
async def quick_report(lab):
    """One quick soak on the session's lab (all four brokers): the report and its analysis."""
    report = await soak(QUICK, lab=lab)
    return report, soak_report.analyse(report)


@pytest.mark.timeout(90)
async def test_sampler_saw_every_broker_process(quick_report, lab):
    report, analysis = quick_report
    seen = {r["pid"] for r in report["samples"]}
    for protocol, broker in lab.brokers.items():
        assert broker.pid in seen, f"{protocol}: the broker's child process was never sampled"
        if broker.native_pid:
            assert broker.native_pid in seen, f"{protocol}: the native broker ({broker.native_pid}) was never sampled"
    assert lab.brokers["amqp"].native_pid in seen  # RabbitMQ's beam.smp
    names = {p["process"] for p in analysis["processes"]}
    assert "harness" in names
    assert any("beam.smp" in n for n in names)
    phases = [c["phase"] for c in report["checkpoints"]]
    assert phases == ["before load", "after warm-up", "end"]
    assert any(r["process"] == "workers" and r["procs"] > 0 for r in report["samples"]), "no worker was sampled"


async def test_every_protocol_counts_add_up(quick_report):
    report, analysis = quick_report
    rows = {p["protocol"]: p for p in analysis["protocols"]}
    assert set(rows) == set(PROTOCOLS)
    for protocol, row in rows.items():
        soaked = [w for w in report["windows"] if w["protocol"] == protocol and w["phase"] == "soak"]
        assert soaked, f"{protocol}: no window ran after the warm-up"
        assert row["sent"] > 0
        assert row["sent"] == row["delivered"] + row["lost"], protocol  # one subscriber per window
        assert row["duplicated"] >= 0
    for w in report["windows"]:
        if not w.get("error"):
            assert w["sent"] == w["delivered"] + w["lost"], w


async def test_verdicts_and_section_are_present(quick_report, tmp_path):
    report, analysis = quick_report
    verdicts = analysis["verdicts"]
    for key in ("memory_flat", "nothing_lost", "no_fd_leak", "rate_kept", "all_pass"):
        assert isinstance(verdicts[key], bool), key
    assert isinstance(verdicts["duplicates"], int)
    for p in analysis["processes"]:
        assert {"rss_start_mib", "rss_end_mib", "slope_mib_min", "fds_start", "fds_end", "memory_flat",
                "fds_ok"} <= set(p)
    text = soak_report.markdown(report, analysis, machine="test machine")
    for protocol in PROTOCOLS:
        assert f"| {protocol} |" in text
    assert "Verdicts: memory flat" in text
    chart = soak_report.plot(report, tmp_path / "soak.png")
    assert chart.stat().st_size > 10_000


def test_settings_refuse_a_warmup_longer_than_the_soak():
    with pytest.raises(ConfigError, match="warm-up"):
        SoakSettings(minutes=0.25, window_s=30.0)
    with pytest.raises(ConfigError, match="rate"):
        SoakSettings(rate=0)
    with pytest.raises(ConfigError, match="payload_bytes"):
        SoakSettings(payload_bytes=10)
