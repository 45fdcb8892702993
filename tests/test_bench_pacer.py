"""benchmarks/pacer.py: the pacer-precision benchmark measures every interval and renders its section."""

from __future__ import annotations

import pytest

from benchmarks import pacer


def test_each_interval_gets_a_row_with_its_lags_and_costs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pacer, "INTERVALS_MS", (0.5, 10.0))
    monkeypatch.setattr(pacer, "SPAN_S", 0.3)
    rows = pacer.measure(quick=False)
    assert [r["interval_ms"] for r in rows] == [0.5, 10.0, 0.5, 10.0]
    assert [r["nap_max_us"] for r in rows] == [250, 250, 1000, 1000]  # acknowledging, then quiet publishers
    assert [r["msgs_s"] for r in rows] == [2000.0, 100.0] * 2
    assert [r["messages"] for r in rows] == [600, pacer.MIN_MESSAGES] * 2
    for row in rows:
        assert 0 <= row["lag_p50_us"] <= row["lag_p90_us"] <= row["lag_p99_us"] <= row["lag_max_us"]
        assert row["cpu_per_msg_us"] > 0 and row["naps_per_msg"] >= 0
    assert rows[0]["coarse_per_msg"] == 0  # 0.5 ms apart: naps only
    assert rows[1]["coarse_per_msg"] == pytest.approx(1.0, abs=0.05)  # one event-loop sleep per message
    assert rows[3]["naps_per_msg"] < rows[1]["naps_per_msg"]  # longer naps, fewer of them
    text = pacer.section(rows, "test machine")
    assert "## Pacer precision" in text and "Machine: test machine" in text
    assert text.count("\n| 0.5 |") == 2 and text.count("\n| 10.0 |") == 2
