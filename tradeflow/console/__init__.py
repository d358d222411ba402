"""``tradeflow console``: a live web page for positions, orders, risk, health and controls.

The console reads the pipeline's streams and tables through the connectors registry
(any profile), folds them into one view (``model``), and pushes it to every open page
with server-sent events; the page (``static/``, plain JS and inline SVG, no build
step) re-renders what changed. Controls (HALT / REDUCING / ACTIVE for global, an
account or a strategy) are appended to the control table with who and why; changing
one needs the console token and the page's CSRF token (``security``). See
docs/console.md.

Starlette, uvicorn and sse-starlette are the ``console`` extra; they are imported only
by this package.
"""

from __future__ import annotations

from connectors.settings import Settings
from tradeflow.console.security import ConsoleError, check_bind, new_token

__all__ = ["ConsoleError", "serve"]


def serve(settings: Settings, *, host: str, port: int, metrics: tuple[str, ...]) -> None:
    """Serve the console until interrupted (prints the URL and the token first)."""
    configured = settings.console.token
    check_bind(host, configured is not None)
    import uvicorn

    from tradeflow.console.app import create_app
    from tradeflow.console.live import Live

    token = configured.get_secret_value() if configured is not None else new_token()
    live = Live(settings, metrics)
    app = create_app(live, token, refresh_s=settings.console.refresh_ms / 1000,
                     push_s=settings.console.push_ms / 1000)
    shown = f"[{host}]" if ":" in host else host
    print(f"tradeflow console: http://{shown}:{port}/  ({settings.profile.value} profile)", flush=True)
    if configured is None:
        print(f"control token: {token}", flush=True)
    else:
        print("control token: from the settings (TRADEFLOW_CONSOLE__TOKEN)", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)
