"""The console's web app (Starlette): the page, its live updates, the control endpoint.

Routes:

- ``GET /``: the page (``static/index.html``), with a fresh CSRF token in a cookie and a
  ``<meta>`` tag;
- ``GET /api/events``: server-sent events, one ``state`` event with the whole view
  at connect, then the sections that changed (``Live.state_since``) after every change;
- ``GET /api/state``: the same view, once (scripts, tests);
- ``GET /api/explain/{id}``: the ``tradeflow risk explain`` text of a signal or order id;
- ``POST /api/control``: ``{"scope", "state", "reason", "who"}`` appended to the control
  table; needs the token and the CSRF token (``tradeflow.console.security``).

A page gets at most one update per ``push_ms`` (what changed meanwhile is merged into it).
A background task reads the streams every ``refresh_ms`` and the jobs' metrics every
second, each in a worker thread; pages are told of a new version through an
``asyncio.Condition``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sse_starlette.sse import EventSourceResponse, ServerSentEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from operators.limits import RiskToolError
from schemas import TradingState
from tradeflow.console.live import Live
from tradeflow.console.security import (
    CSRF_COOKIE,
    CSRF_HEADER,
    TOKEN_HEADER,
    check_write,
    new_token,
)
from tradeflow.risk_tools import explain

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
SCRAPE_S = 1.0


class ControlChange(BaseModel):
    """The body of ``POST /api/control``."""

    model_config = ConfigDict(extra="forbid")

    scope: str = Field(min_length=1, max_length=200)
    """``global``, ``account:<id>`` or ``strategy:<id>``."""
    state: TradingState
    reason: str = Field(min_length=1, max_length=500)
    who: str = Field(min_length=1, max_length=80)


class Updates:
    """Tells waiting pages that ``Live.version`` moved."""

    def __init__(self) -> None:
        self.cond = asyncio.Condition()

    async def notify(self) -> None:
        """Wake every page waiting for a new version."""
        async with self.cond:
            self.cond.notify_all()

    async def wait_past(self, live: Live, seen: int) -> None:
        """Return once ``live.version`` differs from ``seen``."""
        async with self.cond:
            await self.cond.wait_for(lambda: live.version != seen)


class ConsoleApp:
    """The handlers of the console over one ``Live``; control changes need ``token``."""

    def __init__(self, live: Live, token: str, refresh_s: float, push_s: float) -> None:
        self.live = live
        self.token = token
        self.refresh_s = refresh_s
        self.push_s = push_s
        self.updates = Updates()

    async def _refresher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                if await loop.run_in_executor(self.live.io, self.live.refresh):
                    await self.updates.notify()
            except Exception:  # a bug in one refresh must not stop the page's updates
                log.exception("console refresh failed; retrying")
            await asyncio.sleep(self.refresh_s)

    async def _scraper(self) -> None:
        while True:
            try:
                if await asyncio.to_thread(self.live.scrape):
                    await self.updates.notify()
            except Exception:  # a malformed metrics page must not stop the health panel
                log.exception("console metrics scrape failed; retrying")
            await asyncio.sleep(SCRAPE_S)

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Read the streams once, then keep reading while the app serves; close at shutdown."""
        await asyncio.get_running_loop().run_in_executor(self.live.io, self.live.refresh)
        tasks = [asyncio.create_task(self._refresher()), asyncio.create_task(self._scraper())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(self.live.close)

    async def page(self, request: Request) -> Response:
        """Serve the page with a fresh CSRF token (cookie and meta tag)."""
        csrf = new_token()
        html = (STATIC / "index.html").read_text().replace("{{csrf}}", csrf)
        resp = HTMLResponse(html, headers={"Cache-Control": "no-store"})
        resp.set_cookie(CSRF_COOKIE, csrf, httponly=True, samesite="strict")
        return resp

    async def static(self, request: Request) -> Response:
        """Serve the page's script and styles."""
        name = request.path_params["name"]
        if name not in {"console.js", "console.css"}:
            return JSONResponse({"error": "not found"}, status_code=404)
        return FileResponse(STATIC / name, headers={"Cache-Control": "no-store"})

    async def state(self, request: Request) -> Response:
        """Return the whole view once."""
        return Response(self.live.state_since(-1)[1], media_type="application/json")

    async def events(self, request: Request) -> Response:
        """Stream the view: all of it at connect, then what changed after every change."""
        async def stream() -> AsyncIterator[ServerSentEvent]:
            seen = -1
            while True:
                if self.live.version == seen:
                    await self.updates.wait_past(self.live, seen)
                seen, body = self.live.state_since(seen)
                yield ServerSentEvent(data=body, event="state", id=str(seen))
                # at most one update per push_s: what changes meanwhile goes in the next one
                await asyncio.sleep(self.push_s)

        return EventSourceResponse(stream(), ping=15)

    async def explain(self, request: Request) -> Response:
        """Return the ``tradeflow risk explain`` text of a signal or order id."""
        ident = request.path_params["ident"]
        try:
            text = await asyncio.to_thread(explain, self.live.settings, ident)
        except RiskToolError as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        return JSONResponse({"id": ident, "text": text})

    async def control(self, request: Request) -> Response:
        """Append a control change (token and CSRF token checked first)."""
        refusal = check_write(
            token=self.token, given_token=request.headers.get(TOKEN_HEADER),
            csrf_header=request.headers.get(CSRF_HEADER), csrf_cookie=request.cookies.get(CSRF_COOKIE),
            origin=request.headers.get("origin"), host=request.headers.get("host"),
        )
        if refusal is not None:
            return JSONResponse({"error": refusal.reason}, status_code=refusal.status)
        try:
            change = ControlChange.model_validate_json(await request.body())
            row = await asyncio.to_thread(
                self.live.write_control, change.scope, change.state, change.reason.strip(),
                f"{change.who.strip()} (console)",
            )
        except (ValidationError, ValueError) as exc:
            return JSONResponse({"error": _message(exc)}, status_code=422)
        await self.updates.notify()
        return JSONResponse({"ok": True, "control": row.model_dump(mode="json")})


def create_app(live: Live, token: str, *, refresh_s: float = 0.1, push_s: float = 0.1) -> Starlette:
    """Return the console app over ``live``; control changes need ``token``.

    The streams are read every ``refresh_s``; a page gets at most one update per ``push_s``.
    """
    app = ConsoleApp(live, token, refresh_s, push_s)
    routes = [
        Route("/", app.page),
        Route("/static/{name}", app.static),
        Route("/api/state", app.state),
        Route("/api/events", app.events),
        Route("/api/explain/{ident:path}", app.explain),
        Route("/api/control", app.control, methods=["POST"]),
    ]
    return Starlette(routes=routes, lifespan=app.lifespan)


def _message(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        errs: list[Any] = exc.errors(include_url=False)
        return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in errs)
    return str(exc)
