"""The simulation experiments the notebooks draw, each a function returning a tidy DataFrame.

* :func:`polling_vs_push`: the shop's push, short-poll and long-poll clients as
  the poll interval and the number of clients vary: staleness (ms), requests
  and bytes per client per second, and the hub's totals;
* :func:`fan_out_cost`: one publisher, more and more subscribers: the broker's
  CPU per message, its utilisation, latency and capacity;
* :func:`backlog` (from :mod:`labkit.sim.workqueue`): a queue growing and
  draining as consumers come and go;
* :func:`qos_under_loss`: MQTT QoS 0 / 1 / 2 over links that lose messages:
  losses, retransmissions and duplicates;
* :func:`long_haul`: one client behind a long link (80 ms one way): who
  waits for it and who does not.

Every run is seeded; ``progress(text, fraction)``, when given, is called
before each run (a notebook can show a bar with it).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from ..errors import ConfigError
from ..experiment.workload import Workload
from .workqueue import backlog
from .limits import capacity
from .params import LinkSpec, Model
from .runner import simulate_scenario
from .simulation import simulate

log = logging.getLogger(__name__)

__all__ = ["polling_vs_push", "fan_out_cost", "backlog", "qos_under_loss", "long_haul"]

Progress = Callable[[str, float], None]


def _grid(values: Sequence[Any], name: str) -> list[Any]:
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{name}={values!r} must be a list of values, such as [1, 10, 100]")
    out = list(values)
    if not out:
        raise ConfigError(f"{name} is empty; give at least one value")
    return out


def _note(progress: Progress | None, text: str, fraction: float) -> None:
    if progress is not None:
        progress(text, fraction)
    log.info("%s (%.0f%%)", text, fraction * 100)


def polling_vs_push(poll_every_s: Sequence[float] = (0.5, 1.0, 2.0, 5.0), clients: Sequence[int] = (10, 100), *,
                    speedup: float = 10.0, duration_s: float = 20.0, model: Model | None = None, seed: int = 1,
                    progress: Progress | None = None) -> pd.DataFrame:
    """One row per (poll interval, clients, kind): how push, short and long polling compare on the shop's changes.

    Columns: ``poll_every_s`` (s), ``clients`` (of each kind), ``kind``,
    ``staleness_p50_ms`` / ``staleness_p99_ms`` (change to client, ms),
    ``requests_per_client_s``, ``down_bytes_per_client_s``,
    ``up_bytes_per_client_s``, ``hub_requests_s`` and ``hub_bytes_s`` (all
    clients of the kind together, per s), ``empty_answers``,
    ``open_connections_mean``.
    """
    intervals, counts = _grid(poll_every_s, "poll_every_s"), _grid(clients, "clients")
    rows = []
    total = len(intervals) * len(counts)
    for i, every in enumerate(intervals):
        for j, n in enumerate(counts):
            _note(progress, f"shop: poll every {every:g} s, {n} clients of each kind", (i * len(counts) + j) / total)
            r = simulate_scenario("shop", push_clients=n, short_poll_clients=n, long_poll_clients=n,
                                  poll_every_s=every, speedup=speedup, duration_s=duration_s, seed=seed, model=model)
            flows = r.summary.set_index("flow")
            for kind, m in r.meta["metrics"]["kinds"].items():
                rows.append({"poll_every_s": every, "clients": n, "kind": kind,
                             "staleness_p50_ms": float(flows.at[kind, "p50_ms"]),
                             "staleness_p99_ms": float(flows.at[kind, "p99_ms"]),
                             "requests_per_client_s": m["requests_per_client_s"],
                             "down_bytes_per_client_s": m["down_bytes_per_client_s"],
                             "up_bytes_per_client_s": m["up_bytes_per_client_s"],
                             "hub_requests_s": m["requests_per_client_s"] * n,
                             "hub_bytes_s": (m["down_bytes_per_client_s"] + m["up_bytes_per_client_s"]) * n,
                             "empty_answers": m["empty_answers"], "open_connections_mean": m["open_connections_mean"]})
    _note(progress, "done", 1.0)
    return pd.DataFrame(rows)


def fan_out_cost(subscribers: Sequence[int] = (1, 10, 100, 1000), *, protocol: str = "ws", rate: float = 100.0,
                 duration_s: float = 5.0, model: Model | None = None, seed: int = 0,
                 progress: Progress | None = None) -> pd.DataFrame:
    """One row per subscriber count: what fanning one stream out costs the broker.

    Clients are remote devices (``Model(clients="remote")`` unless a model is
    given), so the broker's own cost shows.  Columns: ``subscribers``,
    ``copies_per_s``, ``broker_cpu_us_per_msg`` (CPU us per message in),
    ``broker_cpu_pct`` (of one core), ``p50_ms``, ``p99_ms``,
    ``capacity_msgs_s`` (messages in per second the broker could take) and
    ``bottleneck``.
    """
    counts = _grid(subscribers, "subscribers")
    model = Model(clients="remote") if model is None else model
    rows = []
    for i, n in enumerate(counts):
        _note(progress, f"{protocol}: {n} subscriber(s)", i / len(counts))
        w = Workload(rate=rate, duration_s=duration_s, warmup_s=0.5, subscribers=int(n), seed=seed)
        r = simulate(protocol, w, model=model, seed=seed)
        s, sim = r.summary.iloc[0], r.meta["sim"]
        cap = capacity(model, protocol, w)
        sent = max(1, int(s["sent"]) + int(w.warmup_s * rate))
        rows.append({"subscribers": n, "copies_per_s": float(s["throughput_msgs_s"]),
                     "broker_cpu_us_per_msg": sim["broker_cpu_s"] / sent * 1e6,
                     "broker_cpu_pct": float(s["broker_cpu_pct"]), "p50_ms": float(s["p50_ms"]),
                     "p99_ms": float(s["p99_ms"]), "capacity_msgs_s": cap["capacity_msgs_s"],
                     "bottleneck": cap["bottleneck"]})
    _note(progress, "done", 1.0)
    return pd.DataFrame(rows)


def qos_under_loss(loss: Sequence[float] = (0.0, 0.01, 0.05, 0.1), qos: Sequence[int] = (0, 1, 2), *,
                   rate: float = 200.0, duration_s: float = 10.0, retry_s: float = 0.5, reliable: bool = False,
                   model: Model | None = None, seed: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """One row per (loss, QoS): MQTT over links that lose each transmission with probability ``loss``.

    ``reliable=False`` (default): messages lost to the application (a
    connection reset, a lossy bridge), so QoS 1/2 send again after
    ``retry_s``: QoS 0 loses, QoS 1 delivers all with duplicates when an
    acknowledgement was the one lost, QoS 2 delivers each exactly once.
    ``reliable=True``: TCP repairs every loss after its timeout, so nothing
    is lost but latency grows.  Columns: ``loss``, ``qos``, ``sent``,
    ``delivered``, ``lost``, ``duplicated``, ``redelivered``,
    ``publisher_retries``, ``broker_redeliveries``, ``tcp_retransmissions``,
    ``p50_ms``, ``p99_ms``.
    """
    losses, levels = _grid(loss, "loss"), _grid(qos, "qos")
    base = Model() if model is None else model
    rows = []
    total = len(losses) * len(levels)
    for i, p in enumerate(losses):
        link = LinkSpec(loss=p, reliable=reliable)
        m = base.replace(uplink=link, downlink=link, retry_s=retry_s)
        for j, q in enumerate(levels):
            _note(progress, f"loss {p:g}, QoS {q}", (i * len(levels) + j) / total)
            r = simulate("mqtt", Workload(rate=rate, duration_s=duration_s, warmup_s=0.5, drain_s=10 * retry_s + 2,
                                          seed=seed), model=m, options={"qos": q}, seed=seed)
            s, sim = r.summary.iloc[0], r.meta["sim"]
            rows.append({"loss": p, "qos": q, "reliable": reliable, "sent": int(s["sent"]),
                         "delivered": int(s["delivered"]), "lost": int(s["lost"]), "duplicated": int(s["duplicated"]),
                         "redelivered": int(s["redelivered"]), "publisher_retries": sim["publisher_retries"],
                         "broker_redeliveries": sim["broker_redeliveries"],
                         "tcp_retransmissions": sim["link_retransmissions"], "p50_ms": float(s["p50_ms"]),
                         "p99_ms": float(s["p99_ms"])})
    _note(progress, "done", 1.0)
    return pd.DataFrame(rows)


def long_haul(latency_s: float = 0.08, *, protocol: str = "mqtt", qos: Sequence[int] = (0, 1), subscribers: int = 3,
              rate: float = 1000.0, duration_s: float = 5.0, max_inflight: int = 20, model: Model | None = None,
              seed: int = 0, progress: Progress | None = None) -> pd.DataFrame:
    """One long link (``latency_s`` one way) for subscriber 0, then for the publisher: who waits for it.

    Case ``"far subscriber"``: only subscriber 0 is far; the others' latency
    does not move (the broker decouples them).  Case ``"far publisher"``:
    the publisher is far; at QoS 1 its window of ``max_inflight``
    unacknowledged messages caps its rate at ``max_inflight / round trip``.
    One row per (case, QoS, subscriber): ``p50_ms``, ``p99_ms``,
    ``throughput_msgs_s`` (that subscriber's deliveries per second),
    ``achieved_send_rate`` and ``behind`` (the publisher could not keep the rate).
    """
    levels = _grid(qos, "qos")
    base = Model() if model is None else model
    far = LinkSpec(latency_s=latency_s)
    cases = [("far subscriber", base.replace(subscriber_links={0: far})),
             ("far publisher", base.replace(publisher_links={0: far}))]
    rows = []
    total = len(cases) * len(levels)
    for i, (case, m) in enumerate(cases):
        for j, q in enumerate(levels):
            _note(progress, f"{case}, QoS {q}", (i * len(levels) + j) / total)
            options = {"qos": q, "max_inflight": max_inflight} if protocol == "mqtt" else None
            w = Workload(rate=rate, duration_s=duration_s, warmup_s=0.5, subscribers=subscribers, seed=seed)
            r = simulate(protocol, w, model=m, options=options, seed=seed)
            s = r.summary.iloc[0]
            rows_m = r.messages[(r.messages["phase"] == "measure") & r.messages["delivered"].astype(bool)]
            for sub, part in rows_m.groupby("subscriber"):
                span_s = (part["t_received_ns"].max() - part["t_intended_ns"].min()) / 1e9
                rows.append({"case": case, "qos": q, "subscriber": int(sub), "far": case == "far publisher" or sub == 0,
                             "p50_ms": float(part["latency_ms"].median()),
                             "p99_ms": float(part["latency_ms"].quantile(0.99)),
                             "throughput_msgs_s": len(part) / span_s if span_s > 0 else float("nan"),
                             "achieved_send_rate": float(s["achieved_send_rate"]), "behind": bool(s["behind"])})
    _note(progress, "done", 1.0)
    return pd.DataFrame(rows)
