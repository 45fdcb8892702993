"""The record layouts workers write (numpy only, so worker processes start fast).

All times are ``time.monotonic_ns()`` values, valid across processes on one machine.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SENT_DTYPE", "RECEIVED_DTYPE"]

#: One record per message a publisher sent.  acked_ns is -1 without an acknowledgement.
SENT_DTYPE = np.dtype([("pub", "<i4"), ("seq", "<i8"), ("intended_ns", "<i8"), ("sent_ns", "<i8"),
                       ("acked_ns", "<i8"), ("warmup", "?")])
#: One record per copy a subscriber received (times copied from the envelope, plus received_ns).
RECEIVED_DTYPE = np.dtype([("sub", "<i4"), ("pub", "<i4"), ("seq", "<i8"), ("received_ns", "<i8"),
                           ("intended_ns", "<i8"), ("sent_ns", "<i8"), ("redelivered", "?")])
