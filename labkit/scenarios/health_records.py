"""AMQP health records: durable queues and persistent messages across a RabbitMQ restart; bad records dead-lettered.

Clinics publish electronic health record (EHR) updates, with publisher
confirms, to the topic exchange ``health`` (routing key ``records.{clinic}``),
bound to the records queue.  The EHR service that consumes them is offline
for maintenance at first, so records pile up in the queue; at
``restart_at_s`` RabbitMQ itself restarts (``ctx.request("restart")``).  Then
the service comes online and reads the queue: with a durable queue and
persistent messages every record published before the restart is still
there (flow ``records``: ``lost == 0``); with ``durable=False`` (or
``persistent=False``) they are gone, and the flow counts them lost.

The service acknowledges good records and rejects malformed ones (a seeded
share has no patient id) without requeueing; the queue's
``x-dead-letter-exchange`` sends those to the ``records.dead`` queue, where an
auditor reads them with RabbitMQ's ``x-death`` header saying why (flow
``malformed``, and one ``dead_letter`` event each).

Queue names carry a per-run tag (``records.<tag>``, ``records.dead.<tag>``) so
runs never share a queue, and ``x-expires`` removes both once unused.
"""

from __future__ import annotations

import math
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from . import data
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register
from .stamp import StampError, unstamp
from .trading import ConfirmLog

__all__ = ["HealthRecords", "record_body", "record_problem", "death_details", "EXCHANGE", "DEAD_LETTER_EXCHANGE",
           "RECORD_KINDS"]

#: The topic exchange the clinics publish to.
EXCHANGE = "health"
#: Where rejected records go (a direct exchange bound to the dead-letter queue).
DEAD_LETTER_EXCHANGE = "health.dlx"
#: The kinds of record a clinic sends.
RECORD_KINDS = ("vitals", "lab_result", "prescription", "note")
#: A queue unused this long is removed by the broker (ms): leftovers of a run never pile up.
QUEUE_EXPIRES_MS = 300_000
_LABS = (("hba1c", "%", 5.4, 0.6), ("ldl", "mmol/L", 2.9, 0.7), ("crp", "mg/L", 3.0, 2.0))
_DRUGS = (("metformin", 500), ("lisinopril", 10), ("atorvastatin", 20), ("amoxicillin", 250))
_NOTES = ("follow-up in two weeks", "patient reports improvement", "referred to cardiology", "no change")


def record_body(record_id: str, clinic: str, patient: data.VitalProfile, kind: str, rng: Any, *,
                before_restart: bool, malformed: bool = False) -> dict[str, Any]:
    """One EHR update as JSON-ready data; a malformed one has no ``patient_id``."""
    body: dict[str, Any] = {"record_id": record_id, "clinic": clinic, "patient_id": patient.patient_id,
                            "kind": kind, "before_restart": before_restart}
    if kind == "vitals":
        body.update(vital=patient.vital, value=round(rng.gauss(patient.mean, patient.stddev), 2), unit=patient.unit)
    elif kind == "lab_result":
        test, unit, mean, sd = rng.choice(_LABS)
        body.update(test=test, value=round(max(0.0, rng.gauss(mean, sd)), 2), unit=unit)
    elif kind == "prescription":
        drug, dose = rng.choice(_DRUGS)
        body.update(drug=drug, dose_mg=dose * rng.randint(1, 2))
    else:
        body.update(text=rng.choice(_NOTES))
    if malformed:
        del body["patient_id"]
    return body


def record_problem(body: dict[str, Any]) -> str | None:
    """Why the EHR service refuses ``body`` (a missing patient id, an unknown kind), or None when it is fine."""
    if not body.get("patient_id"):
        return "missing patient_id"
    if body.get("kind") not in RECORD_KINDS:
        return f"unknown kind {body.get('kind')!r}"
    return None


def _text(value: Any) -> Any:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def death_details(headers: dict[str, Any]) -> dict[str, Any]:
    """The first entry of RabbitMQ's ``x-death`` header: reason, queue, exchange, routing keys, count."""
    deaths = headers.get("x-death") or []
    first = deaths[0] if deaths and isinstance(deaths[0], dict) else {}
    return {"reason": _text(first.get("reason")), "queue": _text(first.get("queue")),
            "exchange": _text(first.get("exchange")), "count": first.get("count"),
            "routing_keys": [_text(k) for k in first.get("routing-keys") or []]}


@register
@dataclass(repr=False)
class HealthRecords(Scenario):
    """Clinics, an EHR service that is offline at first, a broker restart, and an auditor of dead letters."""

    name = "health-records"
    title = "AMQP health records"
    summary = ("EHR updates as persistent messages in a durable queue survive a RabbitMQ restart; malformed "
               "records are rejected and dead-lettered.")
    protocols = ("amqp",)
    shows = ("Reliability is a chain: the queue must be durable, each message persistent (delivery mode 2), "
             "and the publisher must wait for the broker's confirm; then a record survives a broker restart. "
             "A consumer that rejects a message without requeueing hands it to the queue's dead-letter "
             "exchange, with an x-death header saying why.")
    look_at = ("`lost` of the `records` flow (0 when durable and persistent; set durable=False to see the "
               "loss), the event 'broker_restart' (records waiting, time taken) and 'survival' (recovered "
               "vs published before the restart), the `malformed` flow and the 'dead_letter' events.")

    duration_s: float = knob(12.0, "how long the measured part runs, restart included", unit="s", low=0.5,
                             high=600.0)
    warmup_s: float = knob(0.0, "a first part, marked and left out of the numbers", unit="s", low=0.0, high=60.0)
    clinics: int = knob(3, "clinics publishing records", low=1, high=50)
    records_per_s: float = knob(40.0, "records all clinics publish together", unit="msgs/s", low=1.0, high=2000.0)
    malformed_pct: float = knob(5.0, "share of records sent without a patient id", unit="%", low=0.0, high=50.0)
    durable: bool = knob(True, "the records and dead-letter queues are durable (survive a restart)")
    persistent: bool = knob(True, "records are persistent messages (delivery mode 2: written to disk)")
    restart: bool = knob(True, "restart RabbitMQ at restart_at_s, while records wait in the queue")
    restart_at_s: float = knob(2.0, "when the restart happens and the EHR service comes online, from the start",
                               unit="s", low=0.1, high=600.0)
    prefetch: int = knob(20, "unacknowledged records the broker may push to the EHR service", unit="messages",
                         low=1, high=1000)

    def validate(self) -> None:
        if self.restart_at_s >= self.warmup_s + self.duration_s:
            raise ConfigError(f"HealthRecords: restart_at_s={self.restart_at_s:g} s must fall before the end of the "
                              f"run (warmup_s + duration_s = {self.warmup_s + self.duration_s:g} s); lower "
                              "restart_at_s or raise duration_s")

    # ------------------------------------------------------------------ setup
    async def setup(self, ctx: ScenarioContext) -> None:
        tag = uuid.uuid4().hex[:8]  # a name, not a random choice of the workload: runs never share a queue
        self._queue, self._dead_queue, self._dead_key = f"records.{tag}", f"records.dead.{tag}", f"dead.{tag}"
        self._clinic_names = [f"clinic-{i + 1}" for i in range(self.clinics)]
        self._patients = [v for v in data.vitals() if v.vital == "heart_rate"] or list(data.vitals())
        options = {"durable": self.durable, "persistent": self.persistent, "confirms": True}
        self._records = ctx.flow("records", "amqp", "records.{clinic}", self._clinic_names, ["ehr-service"],
                                 options=options)
        self._malformed = ctx.flow("malformed", "amqp", "records.{clinic}", self._clinic_names, ["dead-letters"],
                                   options=options)
        self._confirms = ConfirmLog()
        self._counts: Counter[str] = Counter()
        # Declare both queues now (then stop consuming): records wait in them until the service comes online.
        auditor = await ctx.client("amqp", "auditor", exchange=DEAD_LETTER_EXCHANGE, exchange_type="direct")
        self._dead_args = {"x-expires": QUEUE_EXPIRES_MS}
        await (await auditor.subscribe(self._dead_key, **self._dead_queue_options())).close()
        self._args = {"x-dead-letter-exchange": DEAD_LETTER_EXCHANGE,
                      "x-dead-letter-routing-key": auditor.wire_topic(self._dead_key), "x-expires": QUEUE_EXPIRES_MS}
        service = await ctx.client("amqp", "ehr-service", exchange=EXCHANGE)
        await (await service.subscribe("records.*", **self._queue_options())).close()
        ctx.metric("queues", {"records": self._queue, "dead_letters": self._dead_queue})

    def _queue_options(self) -> dict[str, Any]:
        return {"queue": self._queue, "durable": self.durable, "arguments": self._args}

    def _dead_queue_options(self) -> dict[str, Any]:
        return {"queue": self._dead_queue, "durable": self.durable, "arguments": self._dead_args}

    async def _connect_clinics(self, ctx: ScenarioContext) -> dict[str, Any]:
        return {name: await ctx.client("amqp", "clinic", exchange=EXCHANGE, confirms=True, max_inflight=100)
                for name in self._clinic_names}

    # ------------------------------------------------------------------ the run
    async def play(self, ctx: ScenarioContext) -> None:
        interval = 1.0 / self.records_per_s
        turn_ns = ctx.start_ns + int(self.restart_at_s * 1e9)
        clinics = await self._connect_clinics(ctx)
        async for due in ctx.ticks(interval, until_ns=turn_ns):
            await self._publish(ctx, clinics, due, before_restart=True)
        await self._confirms.wait(ctx)
        before = dict(self._counts)
        if self.restart:
            started = ctx.now_ns()
            await ctx.request("restart", protocol="amqp")
            ctx.event("broker_restart", protocol="amqp", took_s=round((ctx.now_ns() - started) / 1e9, 3),
                      records_waiting=before.get("records", 0), malformed_waiting=before.get("malformed", 0),
                      confirmed=self._confirms.confirmed, durable=self.durable, persistent=self.persistent)
            clinics = await self._connect_clinics(ctx)  # every connection died with the broker
        await self._come_online(ctx)
        elapsed_s = (ctx.now_ns() - ctx.start_ns) / 1e9
        resume_s = math.ceil(elapsed_s / interval) * interval  # back on the schedule's grid
        async for due in ctx.ticks(interval, phase_s=resume_s):
            await self._publish(ctx, clinics, due, before_restart=False)

    async def _publish(self, ctx: ScenarioContext, clinics: dict[str, Any], due: int, *, before_restart: bool) -> None:
        clinic = ctx.rng.choice(self._clinic_names)
        malformed = ctx.rng.random() * 100.0 < self.malformed_pct
        flow = self._malformed if malformed else self._records
        number = sum(self._counts.values())
        body = record_body(f"{clinic}-{number:06d}", clinic, ctx.rng.choice(self._patients),
                           ctx.rng.choice(RECORD_KINDS), ctx.rng, before_restart=before_restart, malformed=malformed)
        payload = flow.stamp(clinic, body, due)
        ack = await clinics[clinic].publish(f"records.{clinic}", payload, persistent=self.persistent)
        self._confirms.add(ack, [(flow, payload)])
        self._counts[flow.name] += 1
        if before_restart:
            self._counts[f"{flow.name}_before"] += 1

    async def _come_online(self, ctx: ScenarioContext) -> None:
        """The EHR service and the auditor connect and start reading their queues."""
        service = await ctx.client("amqp", "ehr-service", exchange=EXCHANGE)
        sub = await service.subscribe("records.*", ack="manual", prefetch=self.prefetch, idle_timeout=None,
                                      **self._queue_options())
        ctx.spawn(self._serve(ctx, sub), "ehr-service")
        auditor = await ctx.client("amqp", "auditor", exchange=DEAD_LETTER_EXCHANGE, exchange_type="direct")
        dead = await auditor.subscribe(self._dead_key, idle_timeout=None, **self._dead_queue_options())
        ctx.receive_into("dead-letters", dead, self._on_dead_letter(ctx))
        ctx.event("service_online", queue=self._queue, dead_letter_queue=self._dead_queue)

    async def _serve(self, ctx: ScenarioContext, sub: Any) -> None:
        """Acknowledge good records; reject bad ones without requeueing (the broker dead-letters them)."""
        async for msg in sub:
            try:
                _, body = unstamp(msg.payload)
            except StampError:
                body = {}
            problem = record_problem(body)
            if problem is not None:
                await msg.reject(requeue=False)
                self._counts["rejected"] += 1
                continue
            ctx.rec.receive("ehr-service", msg.payload, msg.received_ns, msg.redelivered)
            if body.get("before_restart"):
                self._counts["recovered"] += 1
            await msg.ack()

    def _on_dead_letter(self, ctx: ScenarioContext) -> Any:
        def on_dead_letter(msg: Any, stamped: Any) -> None:
            body = stamped[1] if stamped else {}
            death = death_details(msg.properties.get("headers") or {})
            ctx.event("dead_letter", record_id=body.get("record_id"), clinic=body.get("clinic"),
                      problem=record_problem(body), **death)
        return on_dead_letter

    async def finish(self, ctx: ScenarioContext) -> None:
        await self._confirms.wait(ctx)
        before = self._counts["records_before"]
        ctx.event("survival", restarted=self.restart, durable=self.durable, persistent=self.persistent,
                  published_before=before, recovered=self._counts["recovered"],
                  lost_in_restart=before - self._counts["recovered"])
        ctx.metric("records_published", {k: self._counts[k] for k in ("records", "malformed")})
        ctx.metric("rejected", self._counts["rejected"])
        ctx.metric("recovered_after_restart", self._counts["recovered"])
        ctx.metric("confirms", {"confirmed": self._confirms.confirmed, "failed": self._confirms.failed,
                                "outstanding": self._confirms.settle()})
