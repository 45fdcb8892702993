"""Solutions to the exercises of ``12_asyncapi.ipynb`` (for teachers).

Plain Python: each answer follows from the document (data/asyncapi/smart_building.yaml)
and the import's rules (docs/asyncapi.md, "## Import"), not from a measurement.
``tests/test_asyncapi_import.py`` runs these answers through the same checks the
notebook uses, on a live run.
"""

from __future__ import annotations

#: Values the floor parameter can take: its enum in components/parameters/floor.
FLOOR_ENUM = 4


def publishers(instances: int) -> int:
    """publishTemperature's publishers: one per (floor, room) pair of building/{floor}/{room}/temperature."""
    floors = min(instances, FLOOR_ENUM)  # an enum gives at most its own values
    rooms = instances  # room has examples, then made-up values: always `instances` of them
    return floors * rooms


# Exercise 1: with INSTANCES = 2, two floors times two rooms.
EXERCISE_1_INSTANCES = 2
EXERCISE_1_PUBLISHERS = publishers(EXERCISE_1_INSTANCES)  # 4

# Exercise 2: hvacCommand says additionalProperties: false, so {"lk": ..., "mode": ...} would not validate;
# the stamp travels in an envelope {"lk": ..., "payload": {...}} instead.
EXERCISE_2_STAMP = "envelope"
