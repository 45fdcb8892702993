"""Frame traces: one message, every frame, captured at the socket and decoded by labkit's wire code.

``await trace_message("mqtt", lab, qos=2)`` returns one row per frame (see
:func:`labkit.trace.message.trace_message`); ``labkit.viz.sequence_diagram``
draws it.  :class:`Capture` is the recording relay, :func:`decode_chunks`
the pure decoding step.  See docs/trace.md.
"""

from __future__ import annotations

from .capture import Capture, Chunk
from .decode import COLUMNS, decode_chunks
from .message import PHASES, trace_message

__all__ = ["Capture", "Chunk", "COLUMNS", "PHASES", "decode_chunks", "trace_message"]
