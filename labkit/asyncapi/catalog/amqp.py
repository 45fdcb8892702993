"""API descriptions of the AMQP scenarios: trading, health-records, collaboration (AMQP + SSE).

AMQP bindings (version 0.3.0): a channel is a routing key on a named
exchange (``is: routingKey`` with the exchange's name, type and
durability) or a queue (``is: queue``); a send operation carries the
``deliveryMode`` (1 transient, 2 persistent) and ``mandatory``; a receive
operation says whether the consumer acknowledges (``ack``).  labkit's AMQP
client declares every named exchange durable, never auto-deleted, on the
virtual host ``/``.
"""

from __future__ import annotations

from typing import Any

from .model import (ApiSpec, ChannelSpec, MessageSpec, OperationSpec, boolean, integer, names_param, number, obj,
                    stamped, text)
from .realtime import SSE_MESSAGE_BINDINGS, http_op

__all__ = ["trading", "health_records", "collaboration", "exchange_channel", "queue_channel", "amqp_send",
           "amqp_receive"]

AMQP_BINDING = "0.3.0"
#: Where labkit's AMQP client puts the RPC correlation id (a message property).
CORRELATION = "$message.header#/correlation_id"


def exchange_channel(name: str, kind: str = "topic") -> dict[str, Any]:
    """Channel bindings of a routing key on exchange ``name`` (durable, as labkit declares it)."""
    return {"amqp": {"is": "routingKey", "exchange": {"name": name, "type": kind, "durable": True,
                                                      "autoDelete": False, "vhost": "/"},
                     "bindingVersion": AMQP_BINDING}}


def queue_channel(name: str, *, durable: bool, exclusive: bool = False, auto_delete: bool = False) -> dict[str, Any]:
    """Channel bindings of queue ``name``."""
    return {"amqp": {"is": "queue", "queue": {"name": name, "durable": durable, "exclusive": exclusive,
                                              "autoDelete": auto_delete, "vhost": "/"},
                     "bindingVersion": AMQP_BINDING}}


def amqp_send(persistent: bool = False, mandatory: bool = False) -> dict[str, Any]:
    """Operation bindings of a publish: delivery mode 2 when persistent, else 1."""
    return {"amqp": {"deliveryMode": 2 if persistent else 1, "mandatory": mandatory, "bindingVersion": AMQP_BINDING}}


def amqp_receive(ack: bool = True) -> dict[str, Any]:
    """Operation bindings of a consumer: ``ack`` True when it acknowledges each delivery."""
    return {"amqp": {"ack": ack, "bindingVersion": AMQP_BINDING}}


def _confirms(on: bool) -> str:
    return " With publisher confirms." if on else " Without publisher confirms."


# ---------------------------------------------------------------------------------------------- trading

def trading(s: Any) -> ApiSpec:
    from ...scenarios import data
    from ...scenarios.trading import EXCHANGE, VENUES

    equities = [x for x in data.symbols() if x.asset_class == "equity"]
    pairs = [x for x in data.symbols() if x.asset_class == "fx"]
    traders = [f"trader-{i + 1}" for i in range(s.traders)]
    executors = [f"executor-{i + 1}" for i in range(s.executors)]
    tickers = [x.symbol for x in equities]
    quote_fields = {"n": integer("the quote's number for its symbol, from 0", minimum=0),
                    "bid": number("price", minimum=0), "ask": number("price", minimum=0),
                    "bid_size": integer("units", minimum=1), "ask_size": integer("units", minimum=1)}
    quote = MessageSpec("quote", "Equity quote", "Bid and ask of one symbol on one venue, stamped.", stamped({
        "symbol": text(enum=tickers), "venue": text(enum=[x.venue for x in equities]), **quote_fields}))
    fx = MessageSpec("fxRate", "FX rate", "Bid and ask of one currency pair, stamped.", stamped({
        "pair": text(enum=[x.symbol for x in pairs]), "venue": text(const="FX"), **quote_fields}))
    order = MessageSpec("order", "Order", "A limit order at the current mid price, stamped; properties reply_to "
                        "(replies.{trader}) and correlation_id.", stamped({
                            "order_id": text("trader-N-K, also the correlation id", pattern=r"^trader-\d+-\d+$"),
                            "trader": text(enum=traders), "symbol": text(enum=tickers),
                            "venue": text(enum=[x.venue for x in equities]), "side": text(enum=("buy", "sell")),
                            "qty": integer("units", minimum=1), "limit": number("price", minimum=0)}),
                        correlation=CORRELATION)
    fill = MessageSpec("fill", "Fill", "The executor's reply, carrying the order's stamp (the trader measures the "
                       "round trip); same correlation_id as the order.", stamped({
                           "order_id": text(pattern=r"^trader-\d+-\d+$"), "executor": text(enum=executors),
                           "symbol": text(enum=tickers), "side": text(enum=("buy", "sell")),
                           "qty": integer("units", minimum=1), "price": number("price", minimum=0),
                           "status": text(const="filled")}), correlation=CORRELATION)
    on_exchange = exchange_channel(EXCHANGE)
    channels = (
        ChannelSpec("quotes", "quotes.{venue}.{symbol}", "amqp", "Equity quotes; desks bind quotes.XNAS.*, "
                    "quotes.*.ZNA or quotes.#.", (quote,), {"venue": names_param("the venue", VENUES),
                                                           "symbol": names_param("the ticker", tickers)},
                    bindings=on_exchange),
        ChannelSpec("fx", "fx.{pair}", "amqp", "FX rates.", (fx,),
                    {"pair": names_param("the currency pair", [x.symbol for x in pairs])}, bindings=on_exchange),
        ChannelSpec("orders", "orders", "amqp", "Orders, routed to the work queue 'orders' that the executors "
                    "share (auto-deleted).", (order,), bindings=on_exchange),
        ChannelSpec("fills", "replies.{trader}", "amqp", "Each trader's replies (a server-named exclusive queue "
                    "bound with this key).", (fill,), {"trader": names_param("the trader", traders)},
                    bindings=on_exchange),
    )
    confirms = _confirms(s.confirms)
    operations = (
        OperationSpec("feedSendsQuote", "send", "quotes", f"The feed, {s.quotes_per_s:g} quotes a second."
                      + confirms, bindings=amqp_send()),
        OperationSpec("deskReceivesQuotes", "receive", "quotes", f"The venue desk (quotes.{s.venue}.*), the symbol "
                      f"desk (quotes.*.{s.watch}) and the all desk (quotes.#).", bindings=amqp_receive()),
        OperationSpec("feedSendsFxRate", "send", "fx", f"The feed, {s.fx_per_s:g} rates a second." + confirms,
                      bindings=amqp_send()),
        OperationSpec("fxDeskReceivesRates", "receive", "fx", "The FX desk, bound with fx.*.",
                      bindings=amqp_receive()),
        OperationSpec("traderSendsOrder", "send", "orders", f"{s.traders} traders, {s.orders_per_s:g} orders a "
                      "second together; the fill comes back on the trader's reply key." + confirms,
                      bindings=amqp_send(), reply="fills"),
        OperationSpec("executorReceivesOrders", "receive", "orders", f"{s.executors} executors compete for the "
                      f"queue, at most {s.prefetch} unacknowledged each; ack after the reply.",
                      bindings=amqp_receive()),
        OperationSpec("executorSendsFill", "send", "fills", f"After {s.fill_ms:g} ms of work, to the order's "
                      "reply_to, with its correlation_id.", bindings=amqp_send()),
        OperationSpec("traderReceivesFills", "receive", "fills", "Matched to the order by correlation_id.",
                      bindings=amqp_receive()),
    )
    return ApiSpec("A trading floor on one topic exchange: quotes routed by venue and symbol, FX rates, and orders "
                   "filled over RPC by competing executors.", channels, operations)


# ---------------------------------------------------------------------------------------------- health records

def _record_schema(clinics: list[str], patient: bool) -> dict[str, Any]:
    from ...scenarios import data
    from ...scenarios.health_records import _DRUGS, _LABS, _NOTES, RECORD_KINDS

    common = {"record_id": text("clinic-N-number", pattern=r"^clinic-\d+-\d{6,}$"), "clinic": text(enum=clinics),
              "patient_id": text(enum=sorted({v.patient_id for v in data.vitals()})),
              "kind": text(enum=RECORD_KINDS), "before_restart": boolean("published before the broker restart")}
    extra = {"vital": text(enum=sorted({v.vital for v in data.vitals()})), "value": number("in `unit`"),
             "unit": text(enum=sorted({v.unit for v in data.vitals()} | {u for _t, u, _m, _s in _LABS})),
             "test": text(enum=[t for t, *_ in _LABS]), "drug": text(enum=[d for d, _ in _DRUGS]),
             "dose_mg": integer("mg", minimum=1), "text": text(enum=_NOTES)}
    by_kind = {"vitals": ("vital", "value", "unit"), "lab_result": ("test", "value", "unit"),
               "prescription": ("drug", "dose_mg"), "note": ("text",)}
    variants = []
    for kind, fields in by_kind.items():
        base = {k: v for k, v in common.items() if patient or k != "patient_id"}
        variants.append(obj({"lk": {"$ref": "#/components/schemas/Stamp"}, **base, "kind": text(const=kind),
                             **{f: extra[f] for f in fields}}))
    return {"oneOf": variants, "description": "an EHR update; its fields depend on `kind`" + (
        "" if patient else " (malformed: no patient_id)")}


def health_records(s: Any) -> ApiSpec:
    from ...scenarios.health_records import DEAD_LETTER_EXCHANGE, EXCHANGE

    clinics = [f"clinic-{i + 1}" for i in range(s.clinics)]
    record = MessageSpec("record", "Health record", "One EHR update, stamped.", _record_schema(clinics, True))
    bad = MessageSpec("malformedRecord", "Malformed record", f"About {s.malformed_pct:g}% of records have no "
                      "patient_id; the service rejects them without requeueing and the queue dead-letters them "
                      "(RabbitMQ adds an x-death header saying why).", _record_schema(clinics, False))
    durable = "durable" if s.durable else "not durable"
    channels = (
        ChannelSpec("records", "records.{clinic}", "amqp", f"Records for the EHR service's queue records.<run> "
                    f"({durable}, x-dead-letter-exchange {DEAD_LETTER_EXCHANGE}).", (record, bad),
                    {"clinic": names_param("the clinic", clinics)}, bindings=exchange_channel(EXCHANGE)),
        ChannelSpec("deadLetters", "dead.{run}", "amqp", f"Rejected records, re-published by RabbitMQ to the direct "
                    f"exchange {DEAD_LETTER_EXCHANGE} with the queue's dead-letter routing key.", (bad,),
                    {"run": names_param("a tag unique to each run (8 hex digits)", [])},
                    bindings=exchange_channel(DEAD_LETTER_EXCHANGE, "direct")),
    )
    restart = f" RabbitMQ restarts at {s.restart_at_s:g} s." if s.restart else ""
    operations = (
        OperationSpec("clinicSendsRecord", "send", "records", f"{s.clinics} clinics, {s.records_per_s:g} records a "
                      "second together, with publisher confirms." + restart,
                      bindings=amqp_send(persistent=s.persistent)),
        OperationSpec("ehrServiceReceivesRecords", "receive", "records", f"Offline until {s.restart_at_s:g} s, then "
                      f"acknowledges good records and rejects malformed ones (prefetch {s.prefetch}).",
                      bindings=amqp_receive()),
        OperationSpec("auditorReceivesDeadLetters", "receive", "deadLetters", "Reads the dead-letter queue "
                      "records.dead.<run>.", bindings=amqp_receive()),
    )
    return ApiSpec("EHR updates as persistent messages in a durable queue survive a broker restart; malformed ones "
                   "are dead-lettered.", channels, operations)


# ---------------------------------------------------------------------------------------------- collaboration

def collaboration(s: Any) -> ApiSpec:
    from ...scenarios.collaboration import EXCHANGE

    docs = [f"doc-{i + 1}" for i in range(s.docs)]
    editors = [f"editor-{i + 1}" for i in range(s.editors)]
    op = {"oneOf": [obj({"op": text(const="insert"), "pos": integer("characters", minimum=0),
                         "text": text("the inserted text")}),
                    obj({"op": text(const="delete"), "pos": integer("characters", minimum=0),
                         "length": integer("characters", minimum=1)})]}
    edit = MessageSpec("edit", "Edit", "One editor's operation on one document, stamped.", stamped({
        "doc": text(enum=docs), "editor": text(enum=editors), "op": op}))
    change = MessageSpec("change", "Document change", "The edit as applied by the document service: its version "
                         "in the document's op log, stamped with the edit's due time.", stamped({
                             "doc": text(enum=docs), "version": integer("1 for the first edit", minimum=1),
                             "editor": text(enum=editors), "op": op,
                             "length": integer("the document's length after the edit (characters)", minimum=0)}),
                         bindings=SSE_MESSAGE_BINDINGS)
    doc = names_param("the document", docs)
    channels = (
        ChannelSpec("edits", "docs.{docId}.edits", "amqp", "Edits, on the topic exchange 'docs'.", (edit,),
                    {"docId": doc}, bindings=exchange_channel(EXCHANGE)),
        ChannelSpec("changes", "docs/{docId}", "sse", "Each document's ordered changes, to the browsers.", (change,),
                    {"docId": doc}),
    )
    operations = (
        OperationSpec("editorSendsEdit", "send", "edits", f"{s.editors} editors, {s.edits_per_s:g} edits a second "
                      "together." + _confirms(s.confirms), bindings=amqp_send()),
        OperationSpec("docServiceReceivesEdits", "receive", "edits", "Bound with docs.*.edits; applies each edit, "
                      "pushes the change, then acknowledges.", bindings=amqp_receive()),
        OperationSpec("docServiceSendsChange", "send", "changes", "One chunked POST per document whose body is an "
                      "event stream.", bindings=http_op("POST")),
        OperationSpec("browserReceivesChanges", "receive", "changes", f"{s.viewers} browsers, one SSE stream per "
                      "document.", bindings=http_op("GET")),
    )
    return ApiSpec("Editors publish edits over AMQP; a document service orders them and pushes the changes to "
                   "browsers over SSE.", channels, operations)
