"""``run(..., network=Impairment(...))``: a run whose workers reach the broker through the proxy."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import AsyncIterator
from typing import Any

from .impairment import Impairment
from .proxy import ImpairmentProxy
from .urls import host_port, with_port

__all__ = ["behind_proxy", "record_network"]


@contextlib.asynccontextmanager
async def behind_proxy(target: Any, impairment: Impairment) -> AsyncIterator[tuple[Any, ImpairmentProxy]]:
    """A copy of ``target`` (a runner Target) whose URLs on the broker's main port go through a proxy.

    Every URL sharing the main URL's host and port (``target.url``) is rewritten; others
    (say, MQTT over WebSocket on its own port) are left as they are.  The proxy stops on exit.
    """
    host, port = host_port(target.url)
    async with ImpairmentProxy(host, port, impairment) as proxy:
        proxied = copy.copy(target)
        proxied.urls = {key: (with_port(url, proxy.port, proxy.listen_host) if _same(url, host, port) else url)
                        for key, url in target.urls.items()}
        yield proxied, proxy


def _same(url: str, host: str, port: int) -> bool:
    try:
        return host_port(url) == (host, port)
    except ValueError:  # ConfigError is a ValueError: a URL without a port is not on the main port
        return False


def record_network(result: Any, impairment: Impairment, proxy: ImpairmentProxy) -> Any:
    """``result`` with the impairment in its meta (``network``) and summary columns ``net_*``."""
    from ..experiment.summary import add_columns

    result.meta["network"] = {**impairment.to_dict(), "proxy": proxy.stats()}
    return add_columns(result, **impairment.columns())
