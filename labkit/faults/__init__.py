"""Faults on purpose: an impairment proxy between clients and brokers (see docs/faults.md)."""

from __future__ import annotations

from .impairment import Impairment, Link, Partition, Partitions
from .proxy import ImpairmentProxy

__all__ = ["Impairment", "Partition", "Link", "Partitions", "ImpairmentProxy"]
