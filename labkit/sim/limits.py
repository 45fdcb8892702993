"""The rate a modelled system can sustain, from its CPU costs and windows (pure arithmetic).

The rule labkit measured on two cores (REFERENCE.md): the rate is bounded by
the busiest process, ``1 / (its CPU-seconds per message)``, and by the
machine, ``cores / (the CPU-seconds per message of every process on it)``;
waiting for acknowledgements bounds it by ``window / round trip``.  At
saturation every process is busy, so no wake-up costs count.  The smallest
bound is the capacity (msgs/s offered over all publishers) and names the
bottleneck.  :func:`labkit.sim.simulate` checks it: offered more, the
simulated throughput stays at about this number while the queues grow.
"""

from __future__ import annotations

import math
from typing import Any

from ..experiment.workload import Workload
from .legs import legs_of
from .params import Model

__all__ = ["capacity"]


def capacity(model: Model, protocol: str, workload: Workload, *, options: dict[str, Any] | None = None
             ) -> dict[str, Any]:
    """``{"capacity_msgs_s", "bottleneck", "limits"}``: msgs/s over all publishers, what binds, every bound (msgs/s)."""
    stack = model.stack(protocol)
    legs = legs_of(protocol, options)
    pubs, subs = workload.publishers, workload.subscribers
    pub_s = stack.publisher_cpu_s + legs.pub_rounds * stack.ack_cpu_s
    sub_s = stack.subscriber_cpu_s + (stack.ack_cpu_s if legs.sub_rounds else 0.0)
    broker_s = (stack.broker_cost_s(subs)
                + (legs.pub_rounds + subs * legs.sub_rounds) * stack.broker_ack_cpu_s)
    limits: dict[str, float] = {
        "publishers": pubs / pub_s if pub_s > 0 else math.inf,
        "subscriber": 1.0 / sub_s if sub_s > 0 and subs else math.inf,
        "broker": stack.broker_threads / broker_s if broker_s > 0 else math.inf,
    }
    hop_s = stack.base_latency_s + broker_s + pub_s
    if legs.pub_window:
        rtt = legs.pub_rounds * (model.uplink.latency_s + model.downlink.latency_s + hop_s)
        limits["publish window"] = pubs * legs.pub_window / rtt if rtt > 0 else math.inf
    if legs.sub_window and subs:
        rtt = model.uplink.latency_s + model.downlink.latency_s + stack.base_latency_s + sub_s
        limits["delivery window"] = legs.sub_window / rtt if rtt > 0 else math.inf
    if model.cores is not None:
        on_machine = broker_s + ((pub_s + subs * sub_s) if model.clients == "machine" else 0.0)
        limits["cores"] = model.cores / on_machine if on_machine > 0 else math.inf
    bottleneck = min(limits, key=lambda k: limits[k])
    return {"capacity_msgs_s": limits[bottleneck], "bottleneck": bottleneck, "limits": limits}
