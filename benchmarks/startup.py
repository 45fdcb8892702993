"""Start-up and stop times of the lab's brokers (s), median of a few runs.

Targets (issue 2): all four brokers up in <= 6 s on a 2-core machine
(RabbitMQ's boot dominates; they start concurrently), amqtt alone <= 0.5 s,
the whole lab stopped in <= 2 s.
"""

from __future__ import annotations

import statistics
import time

from labkit import Lab


def time_lab(protocols: list[str], runs: int, mqtt: str = "amqtt") -> dict[str, float]:
    ups, downs = [], []
    for _ in range(runs):
        started = time.perf_counter()
        lab = Lab(protocols, mqtt=mqtt).start()
        ups.append(time.perf_counter() - started)
        started = time.perf_counter()
        lab.close()
        downs.append(time.perf_counter() - started)
    return {"up_s": statistics.median(ups), "up_max_s": max(ups),
            "down_s": statistics.median(downs), "down_max_s": max(downs)}


def run(runs: int = 3) -> list[dict[str, object]]:
    cases = [
        ("all four (amqtt, RabbitMQ, ws, sse)", ["mqtt", "amqp", "ws", "sse"], "amqtt", 6.0, 2.0),
        ("amqtt alone", ["mqtt"], "amqtt", 0.5, None),
        ("Mosquitto alone", ["mqtt"], "mosquitto", None, None),
        ("RabbitMQ alone", ["amqp"], "amqtt", None, None),
        ("WebSocket hub alone", ["ws"], "amqtt", None, None),
        ("SSE hub alone", ["sse"], "amqtt", None, None),
    ]
    rows = []
    for name, protocols, mqtt, up_target, down_target in cases:
        t = time_lab(protocols, runs, mqtt)
        rows.append({"case": name, **{k: round(v, 3) for k, v in t.items()},
                     "up_target_s": up_target, "down_target_s": down_target})
        print(f"{name:40s} up {t['up_s']:.3f} s (max {t['up_max_s']:.3f})  down {t['down_s']:.3f} s", flush=True)
    return rows
