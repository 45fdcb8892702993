"""AMQP trading: quotes routed by venue and symbol, FX rates, and orders filled over RPC by competing executors.

One topic exchange, ``trading``, carries everything:

* the market feed publishes equity quotes with routing key ``quotes.{venue}.{symbol}``
  and FX rates with ``fx.{pair}`` (prices from ``data/symbols.csv``, a seeded random walk);
* each desk's queue is bound with one pattern: ``quotes.XNAS.*`` (one venue),
  ``quotes.*.ZNA`` (one symbol, any venue), ``quotes.#`` (everything), ``fx.*``;
  each pattern is a flow whose senders are exactly the symbols it matches
  (computed with :func:`labkit.wire.amqp.topic_matches`, as the exchange does);
* traders publish orders with routing key ``orders`` into the work queue ``orders``,
  with ``reply_to`` and ``correlation_id``; competing executors take them with a
  prefetch limit, fill them and reply: flow ``orders`` (audience "self": the trader
  who sent an order receives its fill; latency is the round trip);
* the feed and the traders publish with confirms; ack times land in the Result.

A quote reaching several desks carries one stamp (the ``quotes-all`` flow's); each
desk files its copy under its own flow, with the same sender and sequence number.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from ..wire.amqp import topic_matches
from . import data
from .base import Scenario, knob
from .context import ScenarioContext
from .recorder import Flow
from .registry import register
from .stamp import Stamp, StampError, stamp, unstamp

__all__ = ["Trading", "ConfirmLog", "step_price", "quote_body", "order_body", "fill_body", "desk_bindings",
           "MINUTES_PER_YEAR", "EXCHANGE"]

#: The scenario's topic exchange.
EXCHANGE = "trading"
#: Trading minutes in a year (252 days x 390 min): each quote moves the price by one minute's volatility.
MINUTES_PER_YEAR = 252 * 390
#: Quoted spread around the mid price (basis points, at least one tick each side).
SPREAD_BPS = 4.0
#: Most messages the scenario may push through one RabbitMQ per second on a 2-core machine (msgs/s).
MAX_BROKER_RATE = 5000.0
#: Longest the finish step waits for outstanding publisher confirms (s).
CONFIRM_WAIT_S = 5.0
VENUES = ("XNAS", "XNYS", "XLON")


def _decimals(tick: float) -> int:
    return max(0, -math.floor(math.log10(tick) + 1e-9)) if tick < 1 else 0


def step_price(price: float, vol_annual: float, tick: float, z: float) -> float:
    """The next mid price: a log-normal step of one trading minute's volatility (``z`` a standard normal draw).

    Rounded to the tick grid and never below one tick (price units).
    """
    sigma = vol_annual / math.sqrt(MINUTES_PER_YEAR)
    ticks = max(1, round(price * math.exp(sigma * z) / tick))
    return round(ticks * tick, _decimals(tick))


def quote_body(sym: data.Symbol, mid: float, n: int, rng: random.Random) -> dict[str, Any]:
    """One quote of ``sym`` around ``mid``: bid/ask on the tick grid, sizes in lots, ``n`` its number for ``sym``."""
    half = max(1, round(mid * SPREAD_BPS / 2e4 / sym.tick_size))
    places = _decimals(sym.tick_size)
    return {"symbol": sym.symbol, "venue": sym.venue, "n": n,
            "bid": round(mid - half * sym.tick_size, places), "ask": round(mid + half * sym.tick_size, places),
            "bid_size": rng.randint(1, 50) * sym.lot_size, "ask_size": rng.randint(1, 50) * sym.lot_size}


def order_body(order_id: str, trader: str, sym: data.Symbol, mid: float, rng: random.Random) -> dict[str, Any]:
    """A limit order at the current mid price: side, quantity in lots."""
    return {"order_id": order_id, "trader": trader, "symbol": sym.symbol, "venue": sym.venue,
            "side": rng.choice(("buy", "sell")), "qty": rng.randint(1, 10) * sym.lot_size, "limit": mid}


def fill_body(order: dict[str, Any], executor: str) -> dict[str, Any]:
    """The reply to ``order``: filled in full at its limit price by ``executor``."""
    return {"order_id": order.get("order_id"), "executor": executor, "symbol": order.get("symbol"),
            "side": order.get("side"), "qty": order.get("qty"), "price": order.get("limit"), "status": "filled"}


def desk_bindings(venue: str, watch: str) -> list[tuple[str, str, str]]:
    """The quote desks as (desk name, flow name, binding pattern)."""
    return [("venue-desk", "quotes-venue", f"quotes.{venue}.*"),
            ("symbol-desk", "quotes-symbol", f"quotes.*.{watch}"),
            ("all-desk", "quotes-all", "quotes.#")]


class ConfirmLog:
    """Publisher confirms to note on their flows (``Flow.acknowledged``) once they arrive; no task per message."""

    def __init__(self) -> None:
        self._pending: list[tuple[Any, list[tuple[Flow, bytes | Stamp]]]] = []
        self.confirmed = 0
        self.failed = 0

    def add(self, ack: Any, marks: list[tuple[Flow, bytes | Stamp]]) -> None:
        """Remember ``ack`` (an :class:`~labkit.protocols.base.Ack`) for the messages ``marks`` name."""
        if ack.from_broker:
            self._pending.append((ack, marks))

    def settle(self) -> int:
        """Note every confirm that arrived; return how many are still outstanding."""
        waiting = []
        for ack, marks in self._pending:
            if not ack.is_done():
                waiting.append((ack, marks))
            elif ack.error is None:
                for flow, mark in marks:
                    flow.acknowledged(mark, ack.acked_ns)
                self.confirmed += 1
            else:
                self.failed += 1
        self._pending = waiting
        return len(waiting)

    async def wait(self, ctx: ScenarioContext, timeout_s: float = CONFIRM_WAIT_S) -> None:
        """Settle until nothing is outstanding, at most ``timeout_s`` seconds."""
        await ctx.wait_for(lambda: self.settle() == 0, timeout_s, "publisher confirms")


@register
@dataclass(repr=False)
class Trading(Scenario):
    """A market feed, quote desks bound by pattern, an FX desk, and traders whose orders executors fill over RPC."""

    name = "trading"
    title = "AMQP trading floor"
    summary = ("Quotes routed by venue and symbol through a topic exchange, FX rates, and orders filled over RPC "
               "by executors competing for a work queue.")
    protocols = ("amqp",)
    shows = ("Exchanges route, queues hold: the feed publishes each quote once, and the broker copies it to "
             "every queue whose binding pattern matches its routing key (quotes.{venue}.{symbol}). Orders go "
             "to one work queue that competing executors share, taking at most `prefetch` unacknowledged "
             "orders each; replies find their trader through reply_to and correlation_id. Publisher confirms "
             "tell the feed the broker has each message.")
    look_at = ("`senders` and `delivered` per quote flow (each desk gets only what its binding matches), "
               "`out_of_order` (0: one channel keeps each symbol in order), the `orders` row (a round trip: "
               "order to fill), `ack_p50_ms` (confirms), and in meta: events 'rpc_reply', metrics "
               "'fills_per_executor' and 'rpc_unmatched'.")

    quotes_per_s: float = knob(200.0, "equity quotes the feed publishes, all symbols together", unit="msgs/s",
                               low=1.0, high=4000.0)
    fx_per_s: float = knob(20.0, "FX rate updates the feed publishes", unit="msgs/s", low=0.1, high=1000.0)
    venue: str = knob("XNAS", "the venue the venue desk follows (binding quotes.{venue}.*)", choices=VENUES)
    watch: str = knob("ZNA", "the equity symbol the symbol desk follows on any venue (binding quotes.*.{watch})")
    traders: int = knob(3, "traders sending orders, each with its own reply queue", low=1, high=50)
    orders_per_s: float = knob(10.0, "orders all traders send together", unit="msgs/s", low=0.1, high=500.0)
    executors: int = knob(2, "executors competing for the orders queue", low=1, high=20)
    prefetch: int = knob(1, "unacknowledged orders the broker may push to one executor", unit="messages",
                         low=1, high=1000)
    fill_ms: float = knob(2.0, "time an executor works on one order before replying", unit="ms", low=0.0,
                          high=1000.0)
    confirms: bool = knob(True, "publisher confirms for the feed and the traders")

    def validate(self) -> None:
        equities = {s.symbol for s in data.symbols() if s.asset_class == "equity"}
        if self.watch not in equities:
            raise ConfigError(f"Trading: watch={self.watch!r} is not an equity in data/symbols.csv; use one of "
                              f"{', '.join(sorted(equities))}")
        total = self.quotes_per_s + self.fx_per_s + 2 * self.orders_per_s
        if total > MAX_BROKER_RATE:
            raise ConfigError(f"Trading: quotes_per_s + fx_per_s + 2 x orders_per_s = {total:g} msgs/s, more than "
                              f"one RabbitMQ handles on 2 cores here (~{MAX_BROKER_RATE:g}); lower quotes_per_s")

    # ------------------------------------------------------------------ setup
    async def setup(self, ctx: ScenarioContext) -> None:
        symbols = data.symbols()
        self._equities = [s for s in symbols if s.asset_class == "equity"]
        self._pairs = [s for s in symbols if s.asset_class == "fx"]
        self._mid = {s.symbol: s.start_price for s in symbols}
        self._count: Counter[str] = Counter()
        self._confirms = ConfirmLog()
        self._ooo: Counter[str] = Counter()
        self._fills: Counter[str] = Counter()
        self._pending: dict[str, str] = {}  # correlation id -> trader
        self._unmatched = 0
        # One random source per concurrent loop, seeded from the run's: the same seed gives the same run.
        self._rng = {name: random.Random(ctx.rng.getrandbits(64)) for name in ("quotes", "fx", "orders")}
        tickers = [s.symbol for s in self._equities]
        if len(set(tickers)) != len(tickers):
            raise ConfigError("data/symbols.csv lists an equity ticker twice; tickers must be unique")
        amqp: dict[str, Any] = {"exchange": EXCHANGE}
        self._feed = await ctx.client("amqp", "feed", confirms=self.confirms, max_inflight=200, **amqp)
        self._desk_flows: list[Flow] = []
        for desk, flow_name, pattern in desk_bindings(self.venue, self.watch):
            matched = [s.symbol for s in self._equities if topic_matches(pattern, _quote_key(s))]
            flow = ctx.flow(flow_name, "amqp", pattern, matched, [desk],
                            options={"binding": pattern, "confirms": self.confirms})
            self._desk_flows.append(flow)
            client = await ctx.client("amqp", "desk", **amqp)
            ctx.spawn(self._desk(ctx, desk, flow, await client.subscribe(pattern, idle_timeout=None)), desk)
        self._all = self._desk_flows[-1]
        self._fx = ctx.flow("fx", "amqp", "fx.*", [p.symbol for p in self._pairs], ["fx-desk"],
                            options={"binding": "fx.*", "confirms": self.confirms})
        client = await ctx.client("amqp", "desk", **amqp)
        ctx.spawn(self._desk(ctx, "fx-desk", self._fx, await client.subscribe("fx.*", idle_timeout=None)), "fx-desk")
        for i in range(self.executors):
            name = f"executor-{i + 1}"
            client = await ctx.client("amqp", "executor", **amqp)
            sub = await client.subscribe("orders", queue="orders", auto_delete=True, ack="manual",
                                         prefetch=self.prefetch, idle_timeout=None)
            ctx.spawn(self._executor(name, client, sub), name)
        self._traders = [f"trader-{i + 1}" for i in range(self.traders)]
        self._orders = ctx.flow("orders", "amqp", "orders", self._traders, audience="self",
                                options={"prefetch": self.prefetch, "executors": self.executors,
                                         "confirms": self.confirms})
        self._trader_clients = {}
        for trader in self._traders:
            client = await ctx.client("amqp", "trader", confirms=self.confirms, max_inflight=100, **amqp)
            replies = await client.subscribe(f"replies.{trader}", idle_timeout=None)  # server-named, exclusive
            ctx.receive_into(trader, replies, self._on_reply(ctx, trader))
            self._trader_clients[trader] = client

    # ------------------------------------------------------------------ receivers
    async def _desk(self, ctx: ScenarioContext, desk: str, flow: Flow, sub: Any) -> None:
        """File each quote under the desk's own flow and check each symbol's numbers only go up."""
        last: dict[str, int] = {}
        async for msg in sub:
            try:
                mark, body = unstamp(msg.payload)
            except StampError:
                ctx.rec.unstamped += 1
                continue
            payload = msg.payload
            if mark.flow != flow.name:  # stamped for quotes-all: same sender and number, this desk's flow
                origin = ctx.rec.flows[mark.flow]
                mark = Stamp(flow.name, flow.sender_index(origin.senders[mark.src]), mark.seq, mark.due_ns,
                             mark.sent_ns)
                payload = stamp(body, mark)
            ctx.rec.receive(desk, payload, msg.received_ns, msg.redelivered)
            symbol, n = str(body.get("symbol") or body.get("pair")), int(body.get("n", -1))
            if n <= last.get(symbol, -1):
                self._ooo[symbol] += 1
                ctx.event("out_of_order", desk=desk, symbol=symbol, n=n, after=last[symbol])
            last[symbol] = max(n, last.get(symbol, -1))

    async def _executor(self, name: str, client: Any, sub: Any) -> None:
        """Take orders from the shared queue, work on each, reply to its reply_to, then acknowledge it."""
        async for msg in sub:
            try:
                mark, order = unstamp(msg.payload)
            except StampError:
                await msg.reject(requeue=False)
                continue
            if self.fill_ms:
                await asyncio.sleep(self.fill_ms / 1000.0)
            reply_to, cid = msg.properties.get("reply_to"), msg.properties.get("correlation_id")
            if reply_to:
                # The fill carries the order's stamp: the trader measures the whole round trip.
                await client.publish(reply_to, stamp(fill_body(order, name), mark), correlation_id=cid)
            await msg.ack()
            self._fills[name] += 1

    def _on_reply(self, ctx: ScenarioContext, trader: str) -> Any:
        def on_reply(msg: Any, stamped: tuple[Stamp, dict[str, Any]] | None) -> None:
            cid = msg.properties.get("correlation_id")
            if cid is None or self._pending.get(cid) != trader:
                self._unmatched += 1
                ctx.event("rpc_unmatched", trader=trader, correlation_id=cid)
                return
            del self._pending[cid]
            body = stamped[1] if stamped else {}
            ctx.event("rpc_reply", trader=trader, correlation_id=cid, executor=body.get("executor"),
                      symbol=body.get("symbol"), side=body.get("side"), qty=body.get("qty"), price=body.get("price"))
        return on_reply

    # ------------------------------------------------------------------ senders
    async def play(self, ctx: ScenarioContext) -> None:
        await asyncio.gather(self._quotes(ctx), self._fx_rates(ctx), self._send_orders(ctx))

    async def _quotes(self, ctx: ScenarioContext) -> None:
        rng = self._rng["quotes"]
        async for due in ctx.ticks(1.0 / self.quotes_per_s):
            sym = rng.choice(self._equities)
            await self._publish_quote(sym, _quote_key(sym), self._matching(sym), due, rng)

    async def _fx_rates(self, ctx: ScenarioContext) -> None:
        rng = self._rng["fx"]
        async for due in ctx.ticks(1.0 / self.fx_per_s):
            pair = rng.choice(self._pairs)
            await self._publish_quote(pair, f"fx.{pair.symbol}", [self._fx], due, rng)

    def _matching(self, sym: data.Symbol) -> list[Flow]:
        """The quote flows whose binding matches ``sym``'s routing key, quotes-all first (its stamp travels)."""
        return [self._all, *(f for f in self._desk_flows[:-1] if sym.symbol in f.senders)]

    async def _publish_quote(self, sym: data.Symbol, key: str, flows: list[Flow], due: int,
                             rng: random.Random) -> None:
        self._mid[sym.symbol] = step_price(self._mid[sym.symbol], sym.volatility_annual, sym.tick_size,
                                           rng.gauss(0.0, 1.0))
        n = self._count[sym.symbol]
        self._count[sym.symbol] = n + 1
        body = quote_body(sym, self._mid[sym.symbol], n, rng)
        if sym.asset_class == "fx":
            body["pair"] = body.pop("symbol")
        payload = flows[0].stamp(sym.symbol, body, due)
        sent = unstamp(payload)[0].sent_ns
        marks: list[tuple[Flow, bytes | Stamp]] = [(flows[0], payload)]
        for flow in flows[1:]:  # the same message, expected by these desks too
            flow.stamp(sym.symbol, body, due, now_ns=sent)
            marks.append((flow, Stamp(flow.name, flow.sender_index(sym.symbol), n, due, sent)))
        self._confirms.add(await self._feed.publish(key, payload), marks)

    async def _send_orders(self, ctx: ScenarioContext) -> None:
        rng = self._rng["orders"]
        numbers: Counter[str] = Counter()
        async for due in ctx.ticks(1.0 / self.orders_per_s, phase_s=0.5 / self.orders_per_s):
            trader = rng.choice(self._traders)
            sym = rng.choice(self._equities)
            numbers[trader] += 1
            cid = f"{trader}-{numbers[trader]}"
            payload = self._orders.stamp(trader, order_body(cid, trader, sym, self._mid[sym.symbol], rng), due)
            self._pending[cid] = trader
            ack = await self._trader_clients[trader].publish("orders", payload, reply_to=f"replies.{trader}",
                                                             correlation_id=cid)
            self._confirms.add(ack, [(self._orders, payload)])

    # ------------------------------------------------------------------ finish
    async def finish(self, ctx: ScenarioContext) -> None:
        await self._confirms.wait(ctx)
        for flow in self._desk_flows + [self._fx]:
            ctx.event("ordering", desk=flow.receivers[0], binding=flow.topic, symbols=len(flow.senders),
                      out_of_order=sum(self._ooo[s] for s in flow.senders))
        ctx.metric("out_of_order_per_symbol", {s: self._ooo[s] for s in sorted(self._count)})
        ctx.metric("quotes_per_symbol", dict(sorted(self._count.items())))
        ctx.metric("fills_per_executor", {f"executor-{i + 1}": self._fills[f"executor-{i + 1}"]
                                          for i in range(self.executors)})
        ctx.metric("orders_sent", len(self._orders.sent))
        ctx.metric("rpc_replies", len(ctx.rec.events_of("rpc_reply")))
        ctx.metric("rpc_unmatched", self._unmatched)
        ctx.metric("rpc_unanswered", len(self._pending))
        ctx.metric("confirms", {"confirmed": self._confirms.confirmed, "failed": self._confirms.failed,
                                "outstanding": self._confirms.settle()})
        ctx.metric("executor_utilisation", round(self.orders_per_s * self.fill_ms / 1000.0 / self.executors, 4))


def _quote_key(sym: data.Symbol) -> str:
    return f"quotes.{sym.venue}.{sym.symbol}"

