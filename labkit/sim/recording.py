"""The raw records of a simulated run, in the measurement engine's layouts (times in ns).

Messages are numbered ``m = 0 .. n-1`` in the order of their intended send
times; ``pub``, ``seq`` and ``intended_s`` are fixed before the run, the
send and acknowledgement times are filled in as it goes (NaN: not yet).
Every copy a subscriber takes in is appended to compact columns.
:meth:`Recording.sent_records` and :meth:`Recording.received_records` give
:data:`~labkit.experiment.dtypes.SENT_DTYPE` and
:data:`~labkit.experiment.dtypes.RECEIVED_DTYPE` arrays, which
:func:`labkit.experiment.records.analyse` reads like a live run's.
"""

from __future__ import annotations

from array import array

import numpy as np

from ..errors import ConfigError
from ..experiment.dtypes import RECEIVED_DTYPE, SENT_DTYPE

__all__ = ["Recording", "MAX_COPIES", "to_ns"]

#: Hard cap on received copies recorded per run (bounds memory like the live engine's MAX_DELIVERIES).
MAX_COPIES = 20_000_000


def to_ns(seconds: np.ndarray | float) -> np.ndarray:
    """Simulated seconds -> whole ns (int64), as the live records hold ``time.monotonic_ns()`` values."""
    return np.rint(np.asarray(seconds, dtype=np.float64) * 1e9).astype(np.int64)


class Recording:
    """Sent and received records of one simulated run (see the module doc)."""

    def __init__(self, pub: np.ndarray, seq: np.ndarray, intended_s: np.ndarray, warmup: np.ndarray) -> None:
        n = len(pub)
        if not (len(seq) == len(intended_s) == len(warmup) == n):
            raise ConfigError("Recording: pub, seq, intended_s and warmup must have the same length")
        self.pub = np.asarray(pub, dtype=np.int32)
        self.seq = np.asarray(seq, dtype=np.int64)
        self.intended_s = np.asarray(intended_s, dtype=np.float64)
        self.warmup = np.asarray(warmup, dtype=bool)
        self.sent_s = np.full(n, np.nan)
        self.acked_s = np.full(n, np.nan)
        self.transmissions = 0  # publishes put on the wire, retransmissions included
        self.subscribers = 0
        self.first_copies = 0  # (message, subscriber) pairs received at least once
        self._got = bytearray()
        self._sub = array("l")
        self._msg = array("q")
        self._at = array("d")
        self._redelivered = array("b")

    def __len__(self) -> int:
        return len(self.pub)

    def sent(self, m: int, at_s: float) -> None:
        if self.sent_s[m] != self.sent_s[m]:  # NaN: the first send counts, a retransmission does not move it
            self.sent_s[m] = at_s

    def acked(self, m: int, at_s: float) -> None:
        if self.acked_s[m] != self.acked_s[m]:
            self.acked_s[m] = at_s

    def expect(self, subscribers: int) -> None:
        """Every message should reach ``subscribers`` subscribers (counts first copies for an early drain)."""
        self.subscribers = subscribers
        self._got = bytearray(len(self) * subscribers)

    def received(self, sub: int, m: int, at_s: float, redelivered: bool) -> None:
        if self._got:
            pair = m * self.subscribers + sub
            if not self._got[pair]:
                self._got[pair] = 1
                self.first_copies += 1
        if len(self._at) >= MAX_COPIES:
            raise ConfigError(f"the simulation recorded more than {MAX_COPIES:,} copies; lower the rate, the "
                              "duration or the subscribers (every run is bounded)")
        self._sub.append(sub)
        self._msg.append(m)
        self._at.append(at_s)
        self._redelivered.append(redelivered)

    def fill(self, sent_s: np.ndarray, received_s: np.ndarray) -> None:
        """Take a whole run's records at once: ``sent_s`` per message, ``received_s`` per (message, subscriber).

        NaN means not sent / no copy.  Copies are filed in the order they were
        received (ties by message, then subscriber), as the event model files them.
        """
        if sent_s.shape != (len(self),) or received_s.ndim != 2 or received_s.shape[0] != len(self):
            raise ConfigError("Recording.fill: sent_s needs one time per message, received_s one row per message")
        self.sent_s = np.asarray(sent_s, dtype=np.float64).copy()
        msg, sub = np.nonzero(~np.isnan(received_s))
        at = received_s[msg, sub]
        if at.size > MAX_COPIES:
            raise ConfigError(f"the simulation recorded more than {MAX_COPIES:,} copies; lower the rate, the "
                              "duration or the subscribers (every run is bounded)")
        order = np.lexsort((sub, msg, at))
        self._sub = array("l", sub[order].astype(np.dtype("l")).tobytes())
        self._msg = array("q", msg[order].astype(np.int64).tobytes())
        self._at = array("d", at[order].tobytes())
        self._redelivered = array("b", bytes(at.size))
        self.first_copies = int(at.size)
        if self._got:
            got = np.zeros(len(self) * self.subscribers, dtype=np.uint8)
            got[msg * self.subscribers + sub] = 1
            self._got = bytearray(got.tobytes())

    @property
    def copies(self) -> int:
        return len(self._at)

    def sent_records(self) -> np.ndarray:
        """One SENT_DTYPE record per message that was sent (unsent ones are left out, as live)."""
        done = ~np.isnan(self.sent_s)
        out = np.zeros(int(done.sum()), dtype=SENT_DTYPE)
        out["pub"] = self.pub[done]
        out["seq"] = self.seq[done]
        out["intended_ns"] = to_ns(self.intended_s[done])
        out["sent_ns"] = to_ns(self.sent_s[done])
        acked = self.acked_s[done]
        out["acked_ns"] = np.where(np.isnan(acked), -1, to_ns(np.nan_to_num(acked)))
        out["warmup"] = self.warmup[done]
        return out

    def received_records(self, before_s: float = np.inf) -> np.ndarray:
        """One RECEIVED_DTYPE record per copy taken in before ``before_s`` (the drain deadline)."""
        at = np.frombuffer(self._at, dtype=np.float64) if len(self._at) else np.empty(0)
        keep = at < before_s
        msg = np.frombuffer(self._msg, dtype=np.int64)[keep] if len(self._msg) else np.empty(0, np.int64)
        out = np.zeros(int(keep.sum()), dtype=RECEIVED_DTYPE)
        out["sub"] = np.frombuffer(self._sub, dtype=np.dtype("l"))[keep] if len(self._sub) else []
        out["pub"] = self.pub[msg]
        out["seq"] = self.seq[msg]
        out["received_ns"] = to_ns(at[keep])
        out["intended_ns"] = to_ns(self.intended_s[msg])
        out["sent_ns"] = to_ns(np.nan_to_num(self.sent_s[msg]))
        out["redelivered"] = np.frombuffer(self._redelivered, dtype=np.int8)[keep].astype(bool) if len(keep) else []
        return out
