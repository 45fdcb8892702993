"""Self-checks for the simulation notebook's exercises (09: simulation at scale).

Each function takes the reader's answer (and, where it matters, the table
or Result of their own seeded simulation) and returns a
:class:`labkit.check.Check` (✓, or ✗ with a hint); none raises on a wrong or
missing answer.  They compare with queueing formulas and with counts and
simulated times of seeded simulations, never with the live machine's timings.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

from ..check import Check, _failed, _passed

__all__ = ["erlang_c_answer", "staleness_answer", "duplicates_answer", "backlog_growth_answer",
           "ERLANG_SLACK", "STALENESS_SHARE", "GROWTH_SHARE"]

#: An Erlang C guess passes within this much of the formula (probability).
ERLANG_SLACK = 0.01
#: A staleness guess passes within this share of the simulated median (or 20 ms).
STALENESS_SHARE = 0.15
#: A backlog-growth guess passes within this share of the simulated slope (or 1 job/s).
GROWTH_SHARE = 0.2


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        return None
    return float(value)


def _no_answer(what: str, how: str) -> Check:
    return _failed(f"no answer yet: {what} is None", how)


def erlang_c_answer(answer: Any, arrival_rate: float, service_rate: float, servers: int) -> Check:
    """``answer``: the probability that a message waits at a broker of ``servers`` threads (Erlang C)."""
    from ..sim import theory

    if answer is None:
        return _no_answer("P_WAIT", "work out a = arrival_rate / service_rate and use the Erlang C formula")
    value = _number(answer)
    if value is None or not 0.0 <= value <= 1.0:
        return _failed(f"P_WAIT={answer!r} is not a probability", "give a number between 0 and 1")
    try:
        truth = theory.erlang_c(arrival_rate, service_rate, servers)
    except ValueError as exc:
        return _failed(f"these rates have no steady state: {exc}", "use a utilisation below 1")
    rho = arrival_rate / (servers * service_rate)
    if abs(value - truth) <= ERLANG_SLACK:
        return _passed(f"right: P(wait) = {truth:.3f} (the utilisation is {rho:.2f}; with {servers} threads a "
                       "message waits less often than that)")
    if abs(value - rho) <= ERLANG_SLACK:
        return _failed(f"{value:.3f} is the utilisation rho, which is P(wait) for ONE server only",
                       "with c servers an arrival waits only when all c are busy: Erlang C")
    return _failed(f"P(wait) is {truth:.3f}, not {value:.3f}",
                   "Erlang B by recursion B_k = a B_(k-1) / (k + a B_(k-1)), then C = B / (1 - rho (1 - B))")


def staleness_answer(result: Any, guess_ms: Any) -> Check:
    """``guess_ms``: the median staleness (ms) of the short-polling clients in a simulated shop ``result``."""
    summary = getattr(result, "summary", None)
    meta = getattr(result, "meta", None)
    if summary is None or not isinstance(meta, dict) or meta.get("scenario") != "shop":
        return _failed("result is not a shop Result", "pass what simulate_scenario('shop', ...) returned")
    if guess_ms is None:
        return _no_answer("STALENESS_GUESS_MS", "a change waits for the next poll: how long is that on average?")
    value = _number(guess_ms)
    if value is None:
        return _failed(f"STALENESS_GUESS_MS={guess_ms!r} is not a number", "give milliseconds, such as 500")
    rows = summary[summary["flow"] == "short-poll"]
    if rows.empty:
        return _failed("this shop run has no short-polling clients", "run it with short_poll_clients > 0")
    measured = float(rows.iloc[0]["p50_ms"])
    every_ms = float(meta.get("knobs", {}).get("poll_every_s", float("nan"))) * 1e3
    if abs(value - measured) <= max(20.0, STALENESS_SHARE * measured):
        return _passed(f"right: the median staleness was {measured:.0f} ms with a poll every {every_ms:.0f} ms")
    return _failed(f"the simulated median staleness was {measured:.0f} ms, not {value:.0f}",
                   "a change happens at a random moment between two polls: on average half an interval before "
                   "the next one")


def duplicates_answer(table: Any, answer: Any) -> Check:
    """``answer``: the QoS level that delivered duplicates in a ``qos_under_loss`` table (losses > 0)."""
    if answer is None:
        return _no_answer("DUPLICATES_QOS", "which level sends again without knowing whether the first copy got through?")
    if answer not in (0, 1, 2):
        return _failed(f"DUPLICATES_QOS={answer!r} is not an MQTT QoS level", "answer 0, 1 or 2")
    try:
        lossy = table[table["loss"] > 0]
        dup = lossy.groupby("qos")["duplicated"].sum()
    except (AttributeError, KeyError, TypeError):
        return _failed("table is not a qos_under_loss table", "pass what labkit.sim.qos_under_loss(...) returned")
    with_dups = [int(q) for q, n in dup.items() if n > 0]
    if with_dups == [answer]:
        return _passed(f"right: only QoS {answer} delivered duplicates ({int(dup[answer])} in all); QoS 0 lost "
                       "messages instead and QoS 2's handshake kept every message to one copy")
    return _failed(f"in this table the QoS level(s) with duplicates: {with_dups or 'none'}",
                   "QoS 1 resends when no PUBACK came, even if the PUBLISH itself got through; QoS 2 remembers "
                   "the packet id")


def backlog_growth_answer(table: Any, guess_per_s: Any, until_s: float) -> Check:
    """``guess_per_s``: how many jobs per second the backlog grows by in a ``backlog`` table, from 0 to ``until_s``."""
    if guess_per_s is None:
        return _no_answer("GROWTH_GUESS", "arrivals per second minus what the consumers can do per second")
    value = _number(guess_per_s)
    if value is None:
        return _failed(f"GROWTH_GUESS={guess_per_s!r} is not a number", "give jobs per second, such as 20")
    try:
        part = table[table["t_s"] <= until_s]
        slope = (float(part["queue"].iloc[-1]) - float(part["queue"].iloc[0])) / (
            float(part["t_s"].iloc[-1]) - float(part["t_s"].iloc[0]))
    except (AttributeError, KeyError, IndexError, TypeError, ZeroDivisionError):
        return _failed("table is not a backlog table with rows up to until_s", "pass what labkit.sim.backlog(...) "
                       "returned, and an until_s inside it")
    if abs(value - slope) <= max(1.0, GROWTH_SHARE * abs(slope)):
        return _passed(f"right: the queue grew by {slope:.1f} jobs/s in the simulation (random arrivals make it "
                       "wobble around the straight line)")
    return _failed(f"the simulated queue grew by {slope:.1f} jobs/s, not {value:g}",
                   "consumers / service_s jobs leave per second; rate jobs arrive")
