"""Solutions to the exercises of ``04_amqp_reliability.ipynb`` (for teachers).

Plain Python: each answer follows from what RabbitMQ promises about durable
queues, persistent messages, rejection and dead-lettering, not from a
measurement.  ``tests/test_scenarios_amqp.py`` runs these answers through the
same checks the notebook uses, on live runs.
"""

from __future__ import annotations


def survives_restart(durable: bool, persistent: bool, restart: bool = True) -> str:
    """How many records waiting in the queue the service finds after the broker restarts: 'all' or 'none'.

    A restart keeps a message only if its queue is durable (the queue is
    recreated) AND it is persistent (it was written to disk); no restart, no loss.
    """
    return "all" if not restart or (durable and persistent) else "none"


# Exercise 1: durable queue, transient messages: the queue comes back empty.
EXERCISE_1_KNOBS = {"durable": True, "persistent": False}
EXERCISE_1_ANSWER = survives_restart(**EXERCISE_1_KNOBS)  # "none"

# Exercise 2: the service rejects a malformed record with requeue=False; RabbitMQ dead-letters it and writes
# an x-death entry whose reason is "rejected" (other reasons: "expired" for a TTL, "maxlen" for a full queue).
EXERCISE_2_REASON = "rejected"

# Exercise 3: no restart: a non-durable queue loses nothing while the broker runs.
EXERCISE_3_KNOBS = {"durable": False, "restart": False}
EXERCISE_3_ANSWER = survives_restart(durable=False, persistent=True, restart=False)  # "all"
