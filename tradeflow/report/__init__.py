"""The run report: one HTML page with PNG plots that a person can look at.

``build_report(settings, out_dir)`` reads a run's OUTPUT streams and tables through
``Connectors(settings)`` (so it works the same on the embedded store, Kafka or Fluss),
draws the plots with matplotlib's Agg renderer and writes ``index.html`` beside them
(relative image paths: the folder can be copied or served as it is). ``cmd_report`` is
what ``tradeflow report --data-dir D [--out DIR]`` calls.

What is read, and on which clock (see docs/report.md):

* ``portfolio_state`` and ``positions_state``: the whole changelog, not just the latest
  row, for the equity, drawdown and position curves. Their ``ts`` is the event time of
  the input that caused the update; marks from different market_data partitions reach
  Job C slightly out of order, so each curve is drawn against the running maximum of
  ``ts`` along the changelog (the event time the account's state had caught up with).
* ``sma_wide`` (price and indicators) and ``venue_fills``: event time (the paper venue
  stamps reports with the market tick that caused them; a FIX venue with its own
  TransactTime, a wall clock).
* ``risk_decisions.latency_us`` (Job C's decision time) and ``execution_metrics``
  (Job D's send-to-ack/fill percentiles, per window ending at a wall-clock ``ts``):
  wall clock.

Empty streams give a plot that says "no data"; records that do not decode are left
out and counted on the page.

Modules: ``load`` (reading a run), ``plots`` (one PNG each), ``page`` (the HTML).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from tradeflow.report.load import RunData, load_run
from tradeflow.report.page import render_html
from tradeflow.report.plots import (
    PLOTS,
    Plot,
    order_to_fill_seconds,
    plot_equity,
    plot_latency,
    plot_positions,
    plot_prices,
    plot_risk_events,
)
from tradeflow.settings import Profile, Settings, load_settings

__all__ = [
    "PLOTS",
    "Plot",
    "RunData",
    "build_report",
    "cmd_report",
    "load_run",
    "order_to_fill_seconds",
    "render_html",
]


def build_report(settings: Settings, out_dir: Path, *, top_symbols: int = 6, price_symbols: int = 3) -> Path:
    """Build the report of the run ``settings`` points at into ``out_dir``; return its index.html."""
    data = load_run(settings, price_symbols=price_symbols)
    out_dir.mkdir(parents=True, exist_ok=True)
    plots = [
        plot_equity(data, out_dir / "equity.png"),
        plot_positions(data, out_dir / "positions.png", top_n=top_symbols),
        plot_prices(data, out_dir / "prices.png"),
        plot_risk_events(data, out_dir / "risk_events.png"),
        plot_latency(data, out_dir / "latency.png"),
    ]
    index = out_dir / "index.html"
    index.write_text(render_html(settings, data, plots, datetime.now(UTC)), encoding="utf-8")
    return index


def cmd_report(data_dir: Path, out: Path | None, *, profile: str | None = None) -> Path:
    """Build the report of the run in ``data_dir`` into ``out`` (default ``<data_dir>/report``).

    Return the path of index.html. Raise ``FileNotFoundError`` when the embedded store's
    data directory does not exist.
    """
    overrides: dict[str, object] = {"data_dir": data_dir}
    if profile:
        overrides["profile"] = profile
    settings = load_settings(**overrides)
    if settings.profile is Profile.LOCAL and not data_dir.is_dir():
        raise FileNotFoundError(f"no run data in {data_dir}: the directory does not exist")
    return build_report(settings, out if out is not None else data_dir / "report")
