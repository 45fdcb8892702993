"""A scenario run in its own process (``python -m labkit.scenarios.worker``), off the caller's event loop.

Lines of JSON on stdin/stdout: the parent sends the job
``{"scenario": name, "knobs": {...}, "urls": {...}, "prefixes": {...}, "out": path}``;
the worker may ask ``{"event": "request", "id": N, "op": "restart", "args": {...}}``
and reads ``{"reply": N, "ok": true, ...}`` back; it ends with
``{"event": "done", "timings": {...}}`` (records written to ``out`` as JSON)
or ``{"event": "error", "error": ..., "type": ...}``.  EOF on stdin (the
parent went away) ends it: nothing is left behind.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import sys
from typing import Any

from ..errors import LabkitError, LabkitTimeout
from .engine import execute
from .registry import make

log = logging.getLogger(__name__)


def _say(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


class _Channel:
    """Requests to the parent, matched to its replies by id."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.gone = asyncio.Event()

    async def pump(self) -> None:
        while True:
            line = await self.reader.readline()
            if not line:
                self.gone.set()
                for fut in self.waiting.values():
                    if not fut.done():
                        fut.set_exception(LabkitError("the parent process went away"))
                return
            message = json.loads(line)
            fut = self.waiting.pop(int(message.get("reply", -1)), None)
            if fut is not None and not fut.done():
                fut.set_result(message)

    async def request(self, op: str, args: dict[str, Any]) -> dict[str, Any]:
        n = next(self.ids)
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting[n] = fut
        _say({"event": "request", "id": n, "op": op, "args": args})
        reply = await fut
        if not reply.get("ok"):
            raise LabkitError(f"the lab could not {op} {args}: {reply.get('error', 'no reason given')}")
        return reply


async def _main() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    try:
        line = await asyncio.wait_for(reader.readline(), 30.0)
    except TimeoutError:
        raise LabkitTimeout("no job from the parent within 30 s") from None
    job = json.loads(line)
    channel = _Channel(reader)
    pump = asyncio.create_task(channel.pump())
    try:
        scenario = make(job["scenario"], **job["knobs"])
        run = asyncio.create_task(execute(scenario, job["urls"], prefixes=job.get("prefixes"),
                                          requester=channel.request, timeout=float(job.get("timeout", 10.0))))
        gone = asyncio.create_task(channel.gone.wait())
        await asyncio.wait({run, gone}, return_when=asyncio.FIRST_COMPLETED)
        if not run.done():
            run.cancel()
            await asyncio.wait({run}, timeout=10)
            return 1
        gone.cancel()
        ctx, timings = run.result()
        with open(job["out"], "w", encoding="utf-8") as f:
            json.dump({"records": ctx.rec.to_dict(), "errors": ctx.errors}, f)
        _say({"event": "done", "timings": timings})
        return 0
    except Exception as exc:
        log.exception("scenario worker failed")
        kind = type(exc).__name__ if isinstance(exc, LabkitError) else "LabkitError"
        _say({"event": "error", "error": str(exc) or repr(exc), "type": kind})
        return 1
    finally:
        pump.cancel()


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING)
    sys.exit(asyncio.run(_main()))
