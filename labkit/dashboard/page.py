"""The dashboard page, served by the SSE hub at ``GET /dashboard?topic=...``.

One self-contained HTML file (``page.html`` beside this module): inline CSS
and JavaScript, no build step, nothing fetched from another host.  The page
opens ``EventSource`` on ``/sse/{topic}`` of the hub that served it (default
topic :data:`DEFAULT_TOPIC`), draws the vehicles or flights on a canvas map
and the latency p50 per second as a sparkline.  The hub imports only
:func:`add_routes` from here; the page itself holds the drawing logic.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources

from aiohttp import web

from ..errors import ConfigError
from ..security import split_token
from ..wire.topics import hub_topic_problem

__all__ = ["DEFAULT_TOPIC", "PAGE_FILE", "CONTENT_SECURITY_POLICY", "page_html", "dashboard_topic", "page_url",
           "add_routes"]

log = logging.getLogger(__name__)

#: The hub topic the page reads when the URL names none.
DEFAULT_TOPIC = "dashboard/fleet"
#: The package data file holding the page.
PAGE_FILE = "page.html"
#: What the page may load: its own inline script and style, and streams or JSON from the hub that served it.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                           "connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'")


@functools.cache
def page_html() -> str:
    """The page's HTML (read once from the package data file ``page.html``)."""
    return resources.files(__package__).joinpath(PAGE_FILE).read_text(encoding="utf-8")


def dashboard_topic(topic: str | None) -> str:
    """The hub topic a ``?topic=`` value names (``None``: :data:`DEFAULT_TOPIC`); ConfigError when invalid."""
    if topic is None:
        return DEFAULT_TOPIC
    problem = hub_topic_problem(topic)
    if problem:
        raise ConfigError(f"dashboard topic: {problem} (e.g. /dashboard?topic={DEFAULT_TOPIC})")
    return topic


def page_url(sse_url: str, topic: str = DEFAULT_TOPIC) -> str:
    """The page's address on the hub at ``sse_url`` (``http://127.0.0.1:PORT``) for ``topic``.

    A hub URL carrying ``?token=`` (a lab with credentials) gives the page the
    token too; the page passes it on to its stream and its ``/state`` request.
    """
    base, token = split_token(sse_url)
    url = f"{base.rstrip('/')}/dashboard?topic={dashboard_topic(topic)}"
    return f"{url}&token={token}" if token else url


async def _handle_dashboard(request: web.Request) -> web.Response:
    try:
        dashboard_topic(request.query.get("topic"))
    except ConfigError as exc:
        raise web.HTTPBadRequest(text=f"{exc}\n") from None
    return web.Response(text=page_html(), content_type="text/html", charset="utf-8", headers={
        "Cache-Control": "no-cache", "Content-Security-Policy": CONTENT_SECURITY_POLICY,
        "X-Content-Type-Options": "nosniff"})


def add_routes(app: web.Application) -> None:
    """Register ``GET /dashboard`` on the hub's aiohttp application."""
    app.router.add_get("/dashboard", _handle_dashboard)
