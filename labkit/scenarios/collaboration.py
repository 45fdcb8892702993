"""AMQP + SSE collaboration: edits travel over AMQP, a document service orders them, browsers get them over SSE.

Editors publish each edit to the topic exchange ``docs`` with routing key
``docs.{doc_id}.edits`` (publisher confirms on).  The document service
consumes ``docs.*.edits``, appends each edit to its document's ordered op log
(a version number per document), and pushes the change to the SSE hub on
``docs/{doc_id}``; every viewer (a browser) holds an SSE stream per document and
applies the changes to its own replica.  Editors never talk to browsers: the
broker and the hub decouple them, so adding viewers costs the hub, not the
editors.

Flows: ``edits`` (AMQP, editors to the service) and ``edit-to-browser`` (SSE,
stamped by the service with the edit's due time, so its latency runs from the
editor's intended send time to the browser; ``p50_sent_ms`` is the SSE leg alone).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError
from .base import Scenario, knob
from .context import ScenarioContext
from .registry import register
from .trading import ConfirmLog

__all__ = ["Collaboration", "DocLog", "apply_edit", "make_edit", "EXCHANGE", "MAX_DOC_CHARS"]

#: The topic exchange edits travel through.
EXCHANGE = "docs"
#: Longest a document may grow (characters); inserts beyond are cut.
MAX_DOC_CHARS = 2000
#: Positions editors aim at (characters); the service clamps them to the document.
POSITION_RANGE = 400
_WORDS = ("the", "queue", "broker", "event", "message", "stream", "latency", "browser", "edit", "draft",
          "review", "merge", "topic", "order", "version", "note")


def apply_edit(text: str, op: dict[str, Any]) -> str:
    """``text`` after one operation: ``{"op": "insert", "pos", "text"}`` or ``{"op": "delete", "pos", "length"}``.

    Positions are clamped to the text; an insert is cut at ``MAX_DOC_CHARS``
    characters of document.  Anything else leaves the text unchanged.
    """
    pos = min(max(0, int(op.get("pos", 0))), len(text))
    if op.get("op") == "insert":
        room = max(0, MAX_DOC_CHARS - len(text))
        return text[:pos] + str(op.get("text", ""))[:room] + text[pos:]
    if op.get("op") == "delete":
        return text[:pos] + text[pos + max(0, int(op.get("length", 0))):]
    return text


def make_edit(rng: Any) -> dict[str, Any]:
    """A random edit: mostly inserts of a word, some deletes of a few characters."""
    pos = rng.randrange(POSITION_RANGE)
    if rng.random() < 0.7:
        return {"op": "insert", "pos": pos, "text": rng.choice(_WORDS) + " "}
    return {"op": "delete", "pos": pos, "length": rng.randint(1, 6)}


class DocLog:
    """One document as the service keeps it: the ordered op log and the text it gives."""

    def __init__(self) -> None:
        self.ops: list[dict[str, Any]] = []
        self.text = ""

    @property
    def version(self) -> int:
        return len(self.ops)

    def apply(self, op: dict[str, Any]) -> int:
        """Append ``op``, apply it, return the new version (1 for the first edit)."""
        self.ops.append(op)
        self.text = apply_edit(self.text, op)
        return self.version


@register
@dataclass(repr=False)
class Collaboration(Scenario):
    """Editors -> AMQP -> document service -> SSE hub -> browsers, with an ordered op log per document."""

    name = "collaboration"
    title = "Collaborative documents (AMQP + SSE)"
    summary = ("Editors send edits over AMQP; a document service orders them per document and pushes the changes "
               "to many browsers over SSE.")
    protocols = ("amqp", "sse")
    shows = ("An event-driven architecture: editors publish events and move on; the broker decouples them from "
             "the service, the hub decouples the service from the browsers. Each side scales on its own: more "
             "viewers cost the hub more copies, not the editors more work.")
    look_at = ("`edit-to-browser` latency (editor's intended send time to the browser) against `edits` (the AMQP "
               "leg) and `p50_sent_ms` (the SSE leg); metrics 'editor_publish_ms' and "
               "'editor_wire_bytes_per_edit' as `viewers` grows (flat); events 'replicas' (every browser ends "
               "with the service's text) and metric 'version_gaps' (0).")

    editors: int = knob(4, "people editing, each on one document", low=1, high=100)
    docs: int = knob(2, "documents being edited", low=1, high=20)
    viewers: int = knob(20, "browsers watching, each with an SSE stream per document", low=1, high=500)
    edits_per_s: float = knob(20.0, "edits all editors make together", unit="msgs/s", low=0.1, high=1000.0)
    confirms: bool = knob(True, "publisher confirms for the editors' edits")

    def validate(self) -> None:
        streams = self.viewers * self.docs
        if streams > 1000:
            raise ConfigError(f"Collaboration: viewers x docs = {streams} SSE streams; keep it at most 1000 on this "
                              "machine (lower viewers or docs)")
        if self.edits_per_s * streams > 50_000:
            raise ConfigError(f"Collaboration: edits_per_s x viewers x docs = {self.edits_per_s * streams:g} "
                              "deliveries/s would saturate the SSE hub; keep it under 50,000")

    async def setup(self, ctx: ScenarioContext) -> None:
        self._doc_ids = [f"doc-{i + 1}" for i in range(self.docs)]
        self._editor_names = [f"editor-{i + 1}" for i in range(self.editors)]
        self._viewer_names = [f"viewer-{i + 1:03d}" for i in range(self.viewers)]
        self._logs = {doc: DocLog() for doc in self._doc_ids}
        self._confirms = ConfirmLog()
        self._replicas: dict[str, dict[str, str]] = {v: {} for v in self._viewer_names}
        self._versions: dict[str, dict[str, int]] = {v: {} for v in self._viewer_names}
        self._gaps = 0
        self._mismatches = 0
        self._publish_s = 0.0
        self._edits = ctx.flow("edits", "amqp", "docs.{doc}.edits", self._editor_names, ["doc-service"],
                               options={"confirms": self.confirms})
        self._e2b = ctx.flow("edit-to-browser", "sse", "docs/{doc}", self._editor_names, self._viewer_names,
                             options={"ingest": "stream"})
        self._push = await ctx.client("sse", "doc-service", ingest="stream")
        service = await ctx.client("amqp", "doc-service", exchange=EXCHANGE)
        edits = await service.subscribe("docs.*.edits", ack="manual", prefetch=50, idle_timeout=None)
        ctx.spawn(self._serve(ctx, edits), "doc-service")
        for viewer in self._viewer_names:
            browser = await ctx.client("sse", "viewer")
            for doc in self._doc_ids:
                ctx.receive_into(viewer, await browser.subscribe(f"docs/{doc}", idle_timeout=None),
                                 self._on_change(viewer), name=f"{viewer} {doc}")
        self._editor_clients = [await ctx.client("amqp", "editor", exchange=EXCHANGE, confirms=self.confirms,
                                                 max_inflight=100) for _ in self._editor_names]

    async def _serve(self, ctx: ScenarioContext, sub: Any) -> None:
        """Apply each edit to its document's op log, push the change to the browsers, then acknowledge."""
        async for msg in sub:
            got = ctx.rec.receive("doc-service", msg.payload, msg.received_ns, msg.redelivered)
            if got is None or got[1].get("doc") not in self._logs:
                await msg.ack()
                continue
            mark, edit = got
            editor, doc = self._edits.senders[mark.src], edit["doc"]
            log = self._logs[doc]
            version = log.apply(edit["op"])
            change = {"doc": doc, "version": version, "editor": editor, "op": edit["op"], "length": len(log.text)}
            await self._push.publish(f"docs/{doc}", self._e2b.stamp(editor, change, mark.due_ns))
            await msg.ack()

    def _on_change(self, viewer: str) -> Any:
        replica, versions = self._replicas[viewer], self._versions[viewer]

        def on_change(msg: Any, stamped: Any) -> None:
            if stamped is None:
                return
            change = stamped[1]
            doc, version = change.get("doc"), int(change.get("version", 0))
            if version != versions.get(doc, 0) + 1:
                self._gaps += 1
            versions[doc] = version
            replica[doc] = apply_edit(replica.get(doc, ""), change.get("op") or {})
            if len(replica[doc]) != change.get("length"):
                self._mismatches += 1
        return on_change

    async def play(self, ctx: ScenarioContext) -> None:
        async for due in ctx.ticks(1.0 / self.edits_per_s):
            i = ctx.rng.randrange(self.editors)
            editor, doc = self._editor_names[i], self._doc_ids[i % self.docs]
            payload = self._edits.stamp(editor, {"doc": doc, "editor": editor, "op": make_edit(ctx.rng)}, due)
            began = time.perf_counter()
            ack = await self._editor_clients[i].publish(f"docs.{doc}.edits", payload)
            self._publish_s += time.perf_counter() - began
            self._confirms.add(ack, [(self._edits, payload)])

    async def finish(self, ctx: ScenarioContext) -> None:
        await self._confirms.wait(ctx)
        sent = len(self._edits.sent)
        for doc, log in self._logs.items():
            in_sync = sum(1 for v in self._viewer_names if self._replicas[v].get(doc, "") == log.text)
            ctx.event("replicas", doc=doc, version=log.version, chars=len(log.text), viewers_in_sync=in_sync,
                      viewers=self.viewers)
        editor_bytes = [c.wire_bytes() for c in self._editor_clients]
        push_bytes = self._push.wire_bytes()
        ctx.metric("edits_sent", sent)
        ctx.metric("editor_publish_ms", round(1000.0 * self._publish_s / sent, 4) if sent else None)
        ctx.metric("editor_wire_bytes_per_edit",
                   round(sum(b[0] for b in editor_bytes if b) / sent, 1) if sent and all(editor_bytes) else None)
        ctx.metric("service_push_bytes_per_edit", round(push_bytes[0] / sent, 1) if sent and push_bytes else None)
        ctx.metric("sse_streams", self.viewers * self.docs)
        ctx.metric("version_gaps", self._gaps)
        ctx.metric("replica_mismatches", self._mismatches)
        ctx.metric("confirms", {"confirmed": self._confirms.confirmed, "failed": self._confirms.failed,
                                "outstanding": self._confirms.settle()})
