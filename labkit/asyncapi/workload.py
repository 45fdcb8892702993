"""An AsyncAPI 3.0 document as a measured workload: a :class:`~labkit.scenarios.base.Scenario`.

The lab plays every side the document describes.  Each ``send`` operation
is a flow with one publisher per channel instance (a ``{param}`` of the
address gets ``instances`` values); each ``receive`` operation is a
subscriber of every flow on its channel.  A channel that is only sent on
gets a lab observer (``observe-<channel>``) so its messages are measured;
one that is only received on gets a lab peer that publishes to it (flow
``peer-<channel>``).  Payloads are generated from the messages' schemas
(:mod:`labkit.asyncapi.examples`), checked with ``jsonschema``, and carry
the scenario stamp (``"lk"``): inside the object when the schema accepts
one more member, otherwise in an envelope ``{"lk": ..., "payload": ...}``
(docs/asyncapi.md explains the choice).  Bindings map onto the clients:
MQTT ``qos``/``retain``; AMQP exchange name and type, ``is: queue``,
``deliveryMode``, ``priority``, ``expiration``, ``mandatory``, ``ack``.

Everything is planned (and every problem raised, with its JSON pointer)
when the workload is made, before any broker or client starts.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..scenarios.base import Scenario, knob
from ..scenarios.context import ScenarioContext
from ..scenarios.stamp import Stamp
from .document import AsyncAPIError, load, parse
from .examples import validator
from .plan import CHECK_SAMPLE, ENVELOPE_KEY, FlowPlan, Plan, ReceiverPlan, plan

log = logging.getLogger(__name__)

__all__ = ["AsyncApiWorkload", "from_asyncapi", "plan", "Plan", "FlowPlan", "ReceiverPlan", "ENVELOPE_KEY"]

@dataclass(repr=False)
class AsyncApiWorkload(Scenario):
    """The workload an AsyncAPI 3.0 document describes, on the lab's brokers (make it with :func:`from_asyncapi`).

    Not in the scenario registry (it needs a document, so it has no defaults to list): it runs with
    ``workers="inline"``, on the caller's event loop.
    """

    name = "asyncapi"
    title = "AsyncAPI document"
    summary = "Any AsyncAPI 3.0 document in the supported subset, run as a measured workload."
    shows = ("An API described first (channels, messages, operations, bindings), then measured: one flow per send "
             "operation, one subscriber per receive operation, payloads generated from the message schemas.")
    look_at = ("labkit.asyncapi.report(document, result): latency and throughput per operation and per channel, "
               "and metrics['asyncapi'] for the payload checks (payload_invalid must be 0).")

    document: str = knob("", "the AsyncAPI 3.0 document as JSON text (from_asyncapi() fills it)")
    rate: float = knob(20.0, "messages per second each send operation publishes, over its channel instances",
                       unit="msgs/s", low=0.1, high=20000.0)
    instances: int = knob(2, "values generated per channel parameter ({vehicleId}...): one publisher each",
                          low=1, high=50)
    payload_bytes: int = knob(0, "pad a free text field so each payload is about this big; 0 = as generated",
                              unit="bytes", low=0, high=1_000_000)
    pool: int = knob(8, "distinct example payloads generated per message (cycled)", low=1, high=1000)

    def validate(self) -> None:
        if not self.document:
            raise AsyncAPIError("#", "no document; make the workload with labkit.from_asyncapi(path_or_dict)")
        try:
            doc = json.loads(self.document)
        except ValueError as exc:
            raise AsyncAPIError("#", f"the document knob is not JSON text ({exc}); use from_asyncapi()") from None
        self.spec = parse(doc)
        self.plan = plan(self.spec, rate=self.rate, instances=self.instances, payload_bytes=self.payload_bytes,
                         pool=self.pool, seed=self.seed)
        self.protocols = self.plan.protocols  # type: ignore[misc]  # per document, not per class
        self.title = self.spec.title  # type: ignore[misc]

    def describe(self) -> str:
        lines = [f"{self.spec.title} {self.spec.version} [asyncapi; {', '.join(self.protocols)}]"]
        for f in self.plan.flows:
            lines.append(f"  flow {f.name}: {f.protocol} {f.address} ({len(f.senders)} publisher(s), stamp "
                         f"{f.stamp}) -> {', '.join(f.receivers)}")
        knobs = {k: v for k, v in self.knobs.items() if k != "document"}
        lines.append("Knobs: " + ", ".join(f"{k}={v!r}" for k, v in knobs.items()))
        return "\n".join(lines)

    def asyncapi(self, urls: dict[str, str] | None = None) -> dict[str, Any]:
        """The document this workload was made from (a fresh dict; ``urls`` is ignored: the document is as given)."""
        return json.loads(self.document)

    def __repr__(self) -> str:
        return f"AsyncApiWorkload({self.spec.title!r}, rate={self.rate:g}, instances={self.instances})"

    # ------------------------------------------------------------------ setup
    async def setup(self, ctx: ScenarioContext) -> None:
        self._checked = 0
        self._invalid: list[str] = []
        self._retained: dict[Any, set[str]] = {}
        self._acks: list[tuple[Any, int, int, Any]] = []
        self._flows = {}
        for f in self.plan.flows:
            self._flows[f.name] = ctx.flow(f.name, f.protocol, f.address, f.senders, f.receivers,
                                           options=f.options)
        for j, r in enumerate(self.plan.receivers):
            options = dict(r.client)
            if r.protocol == "mqtt":
                options["client_id"] = f"lk-sub{j}"
            client = await ctx.client(r.protocol, r.name, **options)
            checks = [validator(schema, self.spec.root, at) for schema, at in r.checks]
            for topic in r.topics:
                sub = await client.subscribe(topic, **r.subscribe)
                ctx.spawn(self._read(ctx, r.name, sub, checks), f"{r.name} reads {topic}")
        self._senders: list[tuple[FlowPlan, int, Any]] = []
        for i, f in enumerate(self.plan.flows):
            for k, topic in enumerate(f.senders):
                options = dict(f.client)
                if f.protocol == "mqtt":
                    options["client_id"] = f"lk-pub{i}-{k}"
                self._senders.append((f, k, await ctx.client(f.protocol, f.operation, **options)))

    async def _read(self, ctx: ScenarioContext, receiver: str, sub: Any, checks: list[Any]) -> None:
        async for msg in sub:
            if msg.properties.get("retain") or not msg.payload:
                continue  # a retained value left from an earlier run, or one being cleared
            got = ctx.rec.receive(receiver, msg.payload, msg.received_ns, msg.redelivered)
            if got is None or self._checked >= CHECK_SAMPLE * len(self.plan.receivers):
                continue
            self._checked += 1
            body = got[1].get(ENVELOPE_KEY) if set(got[1]) == {ENVELOPE_KEY} else got[1]
            if checks and not any(c.is_valid(body) for c in checks):
                self._invalid.append(f"{receiver}: {json.dumps(body)[:120]}")

    # ------------------------------------------------------------------ play
    async def _publish(self, ctx: ScenarioContext, f: FlowPlan, k: int, client: Any) -> None:
        flow = self._flows[f.name]
        sender = f.senders[k]
        count = len(f.senders)
        interval = count / self.rate
        n = 0
        async for due in ctx.ticks(interval, phase_s=k / self.rate):
            pool = f.bodies[n % len(f.bodies)]
            body = pool[(n // len(f.bodies)) % len(pool)]
            n += 1
            payload = flow.stamp(sender, body, due)
            if f.protocol == "ws":
                await client.publish(sender, payload, text=True)
                continue
            ack = await client.publish(sender, payload, **f.publish)
            if ack.from_broker:  # QoS 1/2: the PUBACK/PUBCOMP time, read after the drain
                src, seq = flow.sent[-1][:2]
                self._acks.append((flow, src, seq, ack))
            if f.publish.get("retain"):
                self._retained.setdefault(client, set()).add(sender)

    async def play(self, ctx: ScenarioContext) -> None:
        await asyncio.gather(*(self._publish(ctx, f, k, c) for f, k, c in self._senders))

    async def finish(self, ctx: ScenarioContext) -> None:
        for flow, src, seq, ack in self._acks:
            if ack.is_done() and ack.error is None and ack.acked_ns is not None:
                flow.acknowledged(Stamp(flow.name, src, seq, 0, 0), ack.acked_ns)
        for client, topics in self._retained.items():  # leave the broker as found: clear retained values
            for topic in sorted(topics):
                await client.publish(topic, b"", qos=0, retain=True)
        ctx.metric("asyncapi", {
            "title": self.spec.title, "version": self.spec.version,
            "flows": {f.name: {"operation": f.operation, "channel": f.channel, "stamp": f.stamp,
                               "receivers": f.receivers} for f in self.plan.flows},
            "receivers": {r.name: {"operation": r.operation, "channel": r.channel, "topics": r.topics}
                          for r in self.plan.receivers},
            "payload_checked": self._checked, "payload_invalid": len(self._invalid),
            "invalid_examples": self._invalid[:5],
        })


def _jsonable(value: Any) -> Any:
    return json.loads(json.dumps(value, default=str))  # YAML dates and the like become text


def from_asyncapi(source: str | Path | dict[str, Any], **knobs: Any) -> AsyncApiWorkload:
    """The workload an AsyncAPI 3.0 document describes, ready for :func:`labkit.run_scenario` or :func:`run`.

    ``source``: a dict or the path of a ``.yaml``/``.json`` file.  ``knobs``:
    ``rate`` (msgs/s per send operation), ``instances`` (values per channel
    parameter), ``payload_bytes`` (target payload size, bytes; 0 = as generated),
    ``pool``, ``seed``, ``duration_s``, ``warmup_s``, ``drain_s``.  Raises
    :class:`~labkit.asyncapi.document.AsyncAPIError` (naming the JSON
    pointer) for anything outside the supported subset; nothing is started.
    """
    known = set(AsyncApiWorkload.__dataclass_fields__) - {"document"}
    unknown = sorted(set(knobs) - known)
    if unknown:
        raise ConfigError(f"unknown knob(s) {', '.join(unknown)}; from_asyncapi() takes "
                            f"{', '.join(sorted(known))}")
    doc = _jsonable(load(source))
    return AsyncApiWorkload(document=json.dumps(doc, separators=(",", ":")), **knobs)


async def run(source: str | Path | dict[str, Any] | AsyncApiWorkload, *, lab: Any = None,
              workers: str = "inline", mqtt: str = "amqtt", **knobs: Any) -> Any:
    """Run a document (or a workload from :func:`from_asyncapi`) on the lab; return its :class:`~labkit.Result`.

    ``workers="inline"`` (the default) runs the clients on this event loop;
    ``lab``: a started :class:`labkit.Lab` with the document's protocols
    (default: a private one, started and stopped for the run).
    """
    from ..scenarios.runner import run_scenario

    if workers != "inline":
        raise ConfigError(f"workers={workers!r}: an AsyncAPI workload runs inline (on this event loop) for now; "
                          "use workers='inline'")
    workload = source if isinstance(source, AsyncApiWorkload) else from_asyncapi(source, **knobs)
    if knobs and isinstance(source, AsyncApiWorkload):
        raise ConfigError(f"knobs {sorted(knobs)} given with a ready workload; pass them to from_asyncapi()")
    return await run_scenario(workload, lab=lab, workers=workers, mqtt=mqtt)
