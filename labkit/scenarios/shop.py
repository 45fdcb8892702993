"""SSE online shop: stock and price changes pushed, against clients that short-poll and long-poll.

The shop (``data/products.csv``) sells, restocks and reprices; every change
goes into the SSE hub on ``shop/products`` once.  Three kinds of client
follow it side by side:

* **push**: an SSE stream (``GET /sse/shop/products``); the hub writes each change as it happens;
* **short-poll**: ``GET /state/shop/products?since=ID`` every ``poll_every_s``, with the
  last ``ETag`` in ``If-None-Match`` (a ``304`` when nothing changed);
* **long-poll**: ``GET /poll/shop/products?since=ID&wait=S``, held by the hub until
  something newer exists, asked again at once.

One flow per kind (``push``, ``short-poll``, ``long-poll``) measures
*staleness*: the time from the change to when the client knows about it.
The shop stamps each change once for the three flows (same number, same
due time), so the three latencies are of the very same changes.  Metrics
per kind (``result.meta["metrics"]["kinds"]``): requests, bytes and the
connections the hub holds open, over the measured part.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..protocols.poll import PollClient
from .base import Scenario, knob
from .context import ScenarioContext
from .data import Product, products
from .registry import register
from .stamp import Stamp, StampError, stamp, unstamp

__all__ = ["Shop", "shop_changes", "CLIENT_KINDS", "TOPIC", "kinds_frame"]

TOPIC = "shop/products"
CLIENT_KINDS = ("push", "short-poll", "long-poll")
#: A sold-out product is restocked this long after (s of shop time), drawn uniformly.
RESTOCK_DELAY_S = (120.0, 600.0)
#: Largest price move of one change (fraction).
PRICE_MOVE = 0.10
#: Most changes one run may generate (a bounded schedule).
MAX_CHANGES = 200_000


def shop_changes(catalogue: Sequence[Product], rng: random.Random,
                 horizon_s: float) -> list[tuple[float, dict[str, Any]]]:
    """The shop's changes over ``horizon_s`` seconds of shop time: (s, body), sorted by time.

    Per product: orders arrive as a Poisson process (``demand_per_min``),
    each taking one unit (``stock``); at 0 the product is ``sold_out`` and
    restocked (``restock``, ``restock_qty`` units) 2-10 minutes later;
    prices change as a Poisson process (``price_change_prob`` per minute)
    by up to 10%.  Draws come from ``rng`` product by product.
    """
    if not horizon_s >= 0:
        raise ConfigError(f"horizon_s={horizon_s!r} must be >= 0 seconds")
    out: list[tuple[float, dict[str, Any]]] = []
    for p in catalogue:
        stock, price = p.stock, p.price
        order_rate, price_rate = p.demand_per_min / 60.0, p.price_change_prob / 60.0
        next_order = rng.expovariate(order_rate) if order_rate > 0 else horizon_s
        next_price = rng.expovariate(price_rate) if price_rate > 0 else horizon_s
        restock_at = rng.uniform(0.0, RESTOCK_DELAY_S[0]) if stock == 0 else None
        for _ in range(4 * MAX_CHANGES):  # each turn moves the product's clock forward
            t = min(next_order, next_price, restock_at if restock_at is not None else horizon_s)
            if t >= horizon_s:
                break
            if len(out) >= MAX_CHANGES:
                raise ConfigError(f"the shop would make more than {MAX_CHANGES:,} changes in {horizon_s:,.0f} s of "
                                  "shop time; lower speedup or duration_s")
            if restock_at is not None and t == restock_at:
                stock, restock_at, kind = stock + p.restock_qty, None, "restock"
            elif t == next_price:
                price = round(price * (1.0 + rng.uniform(-PRICE_MOVE, PRICE_MOVE)), 2)
                next_price, kind = t + rng.expovariate(price_rate), "price"
            else:
                next_order = t + rng.expovariate(order_rate)
                if stock == 0:
                    continue  # an order for a sold-out product changes nothing
                stock -= 1
                kind = "stock"
                if stock == 0:
                    kind, restock_at = "sold_out", t + rng.uniform(*RESTOCK_DELAY_S)
            out.append((t, {"sku": p.sku, "kind": kind, "stock": stock, "price": price}))
    out.sort(key=lambda item: (item[0], item[1]["sku"]))
    return out


def _window_stats(poller: PollClient, start: int, end: int) -> dict[str, float]:
    """Requests started in [start, end), the empty ones, and the time requests were open (s) inside the window."""
    requests = list(poller.requests)
    if poller.asking_since is not None:  # a long-poll still held: open until now
        requests.append((poller.asking_since, time.monotonic_ns(), 0, 0))
    started = [r for r in requests if start <= r[0] < end and r[2]]
    open_s = sum(max(0, min(r[1], end) - max(r[0], start)) for r in requests) / 1e9
    return {"requests": len(started), "empty": sum(1 for r in started if r[3] == 0), "open_s": open_s}


@register
@dataclass(repr=False)
class Shop(Scenario):
    """Push (SSE) against short-polling and long-polling, on the same shop changes."""

    name = "shop"
    title = "SSE online shop: push vs short-poll vs long-poll"
    summary = "Stock and price changes reach push (SSE), short-polling and long-polling clients; compare the costs."
    protocols = ("sse",)
    shows = ("Three ways to learn about changes. Push sends each change once per client the moment it happens; "
             "short polling asks every k seconds (stale by about k/2, and most answers say 'nothing new'); "
             "long polling is fresh but pays one request per change per client.")
    look_at = ("p50/p99 staleness (ms) per flow, and per kind in `kinds_frame(result)`: requests per client "
               "per second, bytes per client per second, empty answers, and connections held open.")

    push_clients: int = knob(10, "clients with an SSE stream", low=0, high=500)
    short_poll_clients: int = knob(10, "clients that ask every poll_every_s", low=0, high=500)
    long_poll_clients: int = knob(10, "clients that keep one long-poll waiting", low=0, high=500)
    poll_every_s: float = knob(1.0, "short-poll interval k", unit="s", low=0.05, high=60.0)
    long_poll_wait_s: float = knob(20.0, "how long the hub may hold a long-poll", unit="s", low=1.0, high=30.0)
    speedup: float = knob(10.0, "shop seconds per real second (orders, restocks, price changes)", unit="x",
                          low=1.0, high=600.0)

    def validate(self) -> None:
        if self.push_clients + self.short_poll_clients + self.long_poll_clients == 0:
            raise ConfigError("Shop: push_clients, short_poll_clients and long_poll_clients are all 0; "
                              "give at least one of them a client")

    def _counts(self) -> dict[str, int]:
        return {"push": self.push_clients, "short-poll": self.short_poll_clients,
                "long-poll": self.long_poll_clients}

    async def setup(self, ctx: ScenarioContext) -> None:
        horizon = (self.warmup_s + self.duration_s) * self.speedup
        self._plan = shop_changes(products(), random.Random(ctx.rng.getrandbits(64)), horizon)
        self._rng = random.Random(ctx.rng.getrandbits(64))
        prefix = {"push": "push", "short-poll": "spoll", "long-poll": "lpoll"}
        self._names = {kind: [f"{prefix[kind]}-{i:03d}" for i in range(n)] for kind, n in self._counts().items()}
        self._flows = {kind: ctx.flow(kind, "sse", TOPIC, ["shop"], names)
                       for kind, names in self._names.items() if names}
        self._shop = await ctx.client("sse", "shop", ingest="stream")
        for name in self._names["push"]:  # the shop stamps for "push" first, so these copies file as they are
            client = await ctx.client("sse", "push")
            ctx.receive_into(name, await client.subscribe(TOPIC, idle_timeout=None))
        self._pollers: dict[str, tuple[str, PollClient, int]] = {}
        ctx.spawn(self._close_pollers_at_the_end(), "shop pollers' closer")
        self._wire_topic = ctx.prefixes.get("sse", "") + TOPIC  # what the SSE client puts on the wire
        for kind in ("short-poll", "long-poll"):
            for name in self._names[kind]:
                poller = PollClient(ctx.url("sse"), ctx.timeout)
                self._pollers[name] = (kind, poller, 0)
                _status, body = await poller.get(f"/state/{self._wire_topic}?limit=0")  # where "now" is
                self._pollers[name] = (kind, poller, int(body["last_id"]) if body else 0)
                poller.requests.clear()

    async def _close_pollers_at_the_end(self) -> None:
        """Wait until the context cancels its tasks (the run is closing), then close the pollers' sessions."""
        try:
            await asyncio.sleep(self.warmup_s + self.duration_s + self.drain_s + 3600.0)
        finally:
            for _kind, poller, _since in self._pollers.values():
                await poller.close()

    def _file(self, ctx: ScenarioContext, kind: str, name: str, payload: bytes | str, received_ns: int) -> None:
        """File a change under ``kind``'s flow (the payload carries the first flow's stamp: same number)."""
        try:
            mark, _body = unstamp(payload)
        except StampError:
            return
        if mark.flow != kind:
            payload = stamp({}, Stamp(kind, mark.src, mark.seq, mark.due_ns, mark.sent_ns))
        ctx.rec.receive(name, payload, received_ns)

    async def _short_poll(self, ctx: ScenarioContext, name: str, poller: PollClient, since: int, stop_ns: int) -> None:
        step = int(self.poll_every_s * 1e9)
        first = ctx.start_ns + int(self._rng.random() * step)
        for k in range((stop_ns - first) // step + 1):
            due = first + k * step
            if due >= stop_ns:
                break
            await ctx.sleep_until(due)
            since = await self._ask(ctx, "short-poll", name, poller, f"/state/{self._wire_topic}?since={since}",
                                    since)

    async def _long_poll(self, ctx: ScenarioContext, name: str, poller: PollClient, since: int, stop_ns: int) -> None:
        wait = self.long_poll_wait_s
        total_s = (stop_ns - ctx.start_ns) / 1e9
        for _ in range(len(self._plan) + int(total_s / wait) + 16):  # at most one answer per change, or per wait
            if ctx.now_ns() >= stop_ns:
                break
            path = f"/poll/{self._wire_topic}?since={since}&wait={wait:g}"
            since = await self._ask(ctx, "long-poll", name, poller, path, since, extra_timeout_s=wait)

    async def _ask(self, ctx: ScenarioContext, kind: str, name: str, poller: PollClient, path: str, since: int,
                   extra_timeout_s: float = 0.0) -> int:
        status, body = await poller.get(path, extra_timeout_s)
        if body is None:
            return since
        now = time.monotonic_ns()
        for event in body["events"]:
            self._file(ctx, kind, name, event["data"], now)
            since = max(since, int(event["id"]))
        if body.get("missed"):
            ctx.event("missed", client=name, kind=kind, events=body["missed"])
        return since

    async def play(self, ctx: ScenarioContext) -> None:
        stop_ns = ctx.end_ns + int(self.drain_s * 1e9)  # pollers keep asking through the drain
        for name, (kind, poller, since) in self._pollers.items():
            loop = self._short_poll if kind == "short-poll" else self._long_poll
            ctx.spawn(loop(ctx, name, poller, since, stop_ns), f"{name} polls")
        meter = ctx.spawn(self._meter(ctx), "shop wire meter")
        flows = list(self._flows.values())
        for offset_s, body in self._plan:
            due = ctx.start_ns + int(offset_s / self.speedup * 1e9)
            if due >= ctx.end_ns:
                break
            await ctx.sleep_until(due)
            now = time.monotonic_ns()
            payload = flows[0].stamp("shop", body, due, now_ns=now)
            for flow in flows[1:]:
                flow.stamp("shop", body, due, now_ns=now)  # the same change, numbered alike, in every flow
            await self._shop.publish(TOPIC, payload)
        self._wire = await meter

    def _poll_bytes(self, kind: str) -> list[int]:
        sent = received = 0
        for k, poller, _ in self._pollers.values():
            if k == kind:
                got = poller.meter.totals() or (0, 0)
                sent, received = sent + got[0], received + got[1]
        return [sent, received]

    def _bytes(self, ctx: ScenarioContext) -> dict[str, list[int]]:
        wire = ctx.wire_bytes()
        return {"push": wire.get("push", [0, 0])[:2], "short-poll": self._poll_bytes("short-poll"),
                "long-poll": self._poll_bytes("long-poll")}

    async def _meter(self, ctx: ScenarioContext) -> tuple[dict[str, list[int]], dict[str, list[int]]]:
        await ctx.sleep_until(ctx.measure_start_ns)
        before = self._bytes(ctx)
        await ctx.sleep_until(ctx.end_ns)
        return before, self._bytes(ctx)

    async def finish(self, ctx: ScenarioContext) -> None:
        before, after = self._wire
        start, end, seconds = ctx.measure_start_ns, ctx.end_ns, self.duration_s
        kinds: dict[str, dict[str, Any]] = {}
        for kind, n in self._counts().items():
            if not n:
                continue
            if kind == "push":  # one stream per client, open the whole time
                stats = {"requests": 0, "empty": 0, "open_s": n * seconds}
            else:
                parts = [_window_stats(p, start, end) for k, p, _ in self._pollers.values() if k == kind]
                stats = {key: sum(part[key] for part in parts) for key in ("requests", "empty", "open_s")}
            kinds[kind] = {
                "clients": n, "requests": stats["requests"], "empty_answers": stats["empty"],
                "requests_per_client_s": stats["requests"] / n / seconds,
                "down_bytes_per_client_s": (after[kind][1] - before[kind][1]) / n / seconds,
                "up_bytes_per_client_s": (after[kind][0] - before[kind][0]) / n / seconds,
                "open_connections_mean": stats["open_s"] / seconds,
            }
        ctx.metric("kinds", kinds)
        ctx.metric("changes_published", len(next(iter(self._flows.values())).sent))


def kinds_frame(result: Any) -> Any:
    """One row per client kind: staleness p50/p99 (ms) from the flows and the cost metrics (a DataFrame)."""
    import pandas as pd

    kinds = result.meta.get("metrics", {}).get("kinds", {})
    rows = []
    for kind, metrics in kinds.items():
        flow = result.summary[result.summary["flow"] == kind]
        row = {"kind": kind, **metrics}
        if len(flow):
            first = flow.iloc[0]
            row.update(staleness_p50_ms=first["p50_ms"], staleness_p99_ms=first["p99_ms"], lost=int(first["lost"]))
        rows.append(row)
    return pd.DataFrame(rows).set_index("kind") if rows else pd.DataFrame()

