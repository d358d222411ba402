"""The report's plots: one PNG each, drawn with matplotlib's Agg renderer.

Empty streams give a plot that says "no data".
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from operators.stats import percentile
from schemas import (
    ExecStatus,
    ExecutionMetrics,
    OrderAction,
    PortfolioState,
    PositionState,
    Severity,
    SmaWide,
    VenueFill,
)
from tradeflow.report.load import RunData

PLOTS = ("equity.png", "positions.png", "prices.png", "risk_events.png", "latency.png")
"""The image files of a report, in page order."""

DPI = 100
WIDTH_IN = 11.5
"""Figures are 1150 px wide: shown at their natural size on a 1280 px wide page."""

SEVERITY_COLOURS = {Severity.INFO: "#1f77b4", Severity.WARN: "#ff7f0e", Severity.CRITICAL: "#d62728"}
ACCOUNT_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


# --- plotting helpers ---------------------------------------------------------------


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _saved(fig: Figure, path: Path, title: str, caption: str, *, has_data: bool = True) -> Plot:
    fig.savefig(path, dpi=DPI, facecolor="white")
    return Plot(path.name, title, caption, has_data)


def _no_data(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)
    ax.text(0.5, 0.5, f"no data\n{why}", ha="center", va="center", fontsize=13, color="#777777",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#cccccc")


def _no_data_plot(path: Path, title: str, caption: str, why: str) -> Plot:
    fig = _figure(2.4)
    _no_data(fig.add_subplot(), title, why)
    return _saved(fig, path, title, caption, has_data=False)


def _time_axis(ax: Axes, label: str = "event time (UTC)") -> None:
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_xlabel(label, fontsize=9)


def _thousands(ax: Axes) -> None:
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:,.0f}"))


def _colours(names: Sequence[str]) -> dict[str, Any]:
    palette = [f"C{i}" for i in range(10)]
    return {name: palette[i % len(palette)] for i, name in enumerate(sorted(names))}


def _frontier(times: Sequence[datetime], floor: datetime | None) -> np.ndarray:
    """Return the running maximum of ``times`` (not before ``floor``) as matplotlib dates."""
    out: list[datetime] = []
    top: datetime | None = floor
    for ts in times:
        top = ts if top is None or ts > top else top
        out.append(top)
    return np.asarray(mdates.date2num(out), dtype=float)


def _dates(times: Sequence[datetime]) -> np.ndarray:
    return np.asarray(mdates.date2num(list(times)), dtype=float)


def _set_span(ax: Axes, data: RunData) -> None:
    if data.span is not None:
        lo, hi = data.span
        if hi > lo:
            ax.set_xlim(float(mdates.date2num(lo)), float(mdates.date2num(hi)))


# --- the plots ----------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    """One image of the report with its heading and caption (HTML)."""

    file: str
    title: str
    caption: str
    has_data: bool


def plot_equity(data: RunData, path: Path) -> Plot:
    """Draw equity and drawdown per account from the portfolio_state changelog."""
    title = "Equity and drawdown per account"
    caption = (
        "From the whole <code>portfolio_state</code> changelog (every update, not only the latest row). "
        "Top: equity (cash + market value of the positions). Bottom: drawdown as Job C computes it "
        "(peak equity minus equity, drawn below zero). x: event time of the latest input the account's "
        "state had seen (running maximum of <code>ts</code> along the changelog, because marks from "
        "different market_data partitions reach Job C slightly out of order); the opening row written "
        "when the account was loaded (before the market) is drawn at the start of the market. "
        "Markers show changes of the account's trading state (kill switch)."
    )
    by_account: dict[str, list[PortfolioState]] = defaultdict(list)
    for row in data.portfolio:
        by_account[row.account].append(row)
    if not by_account:
        return _no_data_plot(path, title, caption, "portfolio_state is empty")
    floor = data.span[0] if data.span else None
    colours = _colours(list(by_account))
    fig = _figure(6.2)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    for acct in sorted(by_account):
        rows = by_account[acct]
        x = _frontier([r.ts for r in rows], floor)
        equity = np.array([float(r.equity) for r in rows])
        drawdown = np.array([-float(r.drawdown) for r in rows])
        pnl = rows[-1].equity - rows[0].equity
        top.step(x, equity, where="post", color=colours[acct], lw=1.3,
                 label=f"{acct} (PnL {pnl:+,.2f})")
        bottom.fill_between(x, drawdown, 0, step="post", color=colours[acct], alpha=0.15)
        bottom.step(x, drawdown, where="post", color=colours[acct], lw=1.0,
                    label=f"{acct} (max {max(r.drawdown for r in rows):,.2f})")
        for prev, cur, xi, eq in zip(rows, rows[1:], x[1:], equity[1:], strict=False):
            if cur.trading_state is not prev.trading_state:
                top.plot([xi], [eq], marker="X", ms=10, color="#d62728", zorder=5)
                top.annotate(cur.trading_state.value, (xi, eq), textcoords="offset points",
                             xytext=(4, 6), fontsize=8, color="#d62728")
    top.set_title(title, loc="left", fontsize=11)
    top.set_ylabel("equity")
    bottom.set_ylabel("drawdown")
    _thousands(top)
    _thousands(bottom)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    _set_span(bottom, data)
    _time_axis(bottom)
    return _saved(fig, path, title, caption)


def plot_positions(data: RunData, path: Path, top_n: int = 6) -> Plot:
    """Draw net positions over time per account for its most active symbols."""
    title = f"Positions per account (top {top_n} symbols by activity)"
    caption = (
        "Net quantity (long above zero, short below) per account and symbol from the whole "
        "<code>positions_state</code> changelog. Only each account's most active symbols are drawn "
        "(most changes of the net quantity, i.e. fills). x: event time, as a running maximum along "
        "each key's changelog (mark updates can arrive slightly out of event-time order)."
    )
    series: dict[str, dict[str, list[PositionState]]] = defaultdict(lambda: defaultdict(list))
    for row in data.positions:
        series[row.account][row.symbol].append(row)
    if not series:
        return _no_data_plot(path, title, caption, "positions_state is empty")
    floor = data.span[0] if data.span else None
    accounts = sorted(series)
    fig = _figure(2.9 * len(accounts) + 0.5)
    axes = fig.subplots(len(accounts), 1, sharex=True, squeeze=False)[:, 0]
    for ax, acct in zip(axes, accounts, strict=True):
        activity = {
            sym: sum(1 for a, b in zip(rows, rows[1:], strict=False) if a.net_qty != b.net_qty) + 1
            for sym, rows in series[acct].items()
        }
        top = sorted(activity, key=lambda s: (-activity[s], s))[:top_n]
        for sym in sorted(top):
            rows = series[acct][sym]
            x = _frontier([r.ts for r in rows], floor)
            ax.step(x, [float(r.net_qty) for r in rows], where="post", lw=1.2,
                    label=f"{sym} ({activity[sym]} changes, now {rows[-1].net_qty:,})")
        ax.axhline(0, color="#333333", lw=0.6)
        ax.set_title(f"{acct}: {len(series[acct])} symbol(s) held at some point", loc="left", fontsize=10)
        ax.set_ylabel("net qty")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
        _thousands(ax)
    _set_span(axes[-1], data)
    _time_axis(axes[-1])
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return _saved(fig, path, title, caption)


def _indicator_columns(rows: list[SmaWide]) -> tuple[list[str], list[str]]:
    names: set[str] = set()
    for row in rows:
        names.update(k for k, v in (row.__pydantic_extra__ or {}).items() if v is not None)

    def period(name: str) -> int:
        return int(name.split("_")[1])

    lines = sorted((n for n in names if n.startswith(("sma_", "ema_"))), key=lambda n: (n[:3], period(n)))
    rsi = sorted((n for n in names if n.startswith("rsi_")), key=period)
    return lines, rsi


def _series(rows: list[SmaWide], name: str) -> np.ndarray:
    return np.array([math.nan if (v := r.indicator(name)) is None else v for r in rows], dtype=float)


def plot_prices(data: RunData, path: Path) -> Plot:
    """Draw price with the SMA/EMA columns (and RSI) of a few symbols, fills marked."""
    title = "Price, indicators and fills"
    caption = (
        "From <code>sma_wide</code>: the tick price (black) with the SMA (solid) and EMA (dashed) "
        "columns Job A computed, and RSI below it with the 30/70 bands. Symbols: the ones with most "
        "fills (then most ticks). Triangles are fills from <code>venue_fills</code> "
        "(<code>last_qty &gt; 0</code>) at their fill price: green up = buy, red down = sell, all "
        "accounts. x: event time (the paper venue stamps a fill with the tick that filled it; a FIX "
        "venue with its own clock)."
    )
    if not data.prices:
        return _no_data_plot(path, title, caption, "sma_wide is empty")
    fills_by_symbol: dict[str, list[VenueFill]] = defaultdict(list)
    for f in data.fills:
        fills_by_symbol[f.symbol].append(f)
    symbols = list(data.prices)
    symbols.sort(key=lambda s: (-len(fills_by_symbol[s]), s))
    ratios: list[float] = []
    for _sym in symbols:
        ratios += [3.0, 1.0]
    fig = _figure(3.6 * len(symbols) + 0.4)
    axes = fig.subplots(2 * len(symbols), 1, height_ratios=ratios, squeeze=False)[:, 0]
    for i, sym in enumerate(symbols):
        rows = data.prices[sym]
        ax, rsi_ax = axes[2 * i], axes[2 * i + 1]
        rsi_ax.sharex(ax)
        x = _dates([r.ts for r in rows])
        lines, rsi = _indicator_columns(rows)
        ax.plot(x, [r.price for r in rows], color="black", lw=1.1, label="price")
        for j, name in enumerate(lines):
            ax.plot(x, _series(rows, name), lw=0.9, alpha=0.85, color=f"C{j}",
                    ls="--" if name.startswith("ema") else "-", label=name)
        fills = fills_by_symbol[sym]
        for side, marker, colour in (("BUY", "^", "#2ca02c"), ("SELL", "v", "#d62728")):
            mine = [f for f in fills if f.side.value == side]
            if mine:
                ax.scatter(_dates([f.ts for f in mine]), [float(f.last_px) for f in mine], marker=marker,
                           s=46, color=colour, edgecolors="black", linewidths=0.5, zorder=5,
                           label=f"{side.lower()} fills ({len(mine)})")
        ax.set_title(f"{sym}: {len(rows):,} ticks, {len(fills)} fills", loc="left", fontsize=10)
        ax.set_ylabel("price")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        ax.tick_params(labelbottom=False)
        for j, name in enumerate(rsi):
            rsi_ax.plot(x, _series(rows, name), lw=0.9, color=f"C{j + 4}", label=name)
        if rsi:
            rsi_ax.axhspan(30, 70, color="#999999", alpha=0.12)
            rsi_ax.set_ylim(0, 100)
            rsi_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        else:
            rsi_ax.text(0.5, 0.5, "no RSI column", ha="center", va="center", transform=rsi_ax.transAxes,
                        color="#777777")
        rsi_ax.set_ylabel("RSI")
        rsi_ax.grid(alpha=0.3)
        _time_axis(rsi_ax)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return _saved(fig, path, title, caption)


def plot_risk_events(data: RunData, path: Path) -> Plot:
    """Draw the risk events on a timeline: one row per rule, coloured by severity."""
    title = "Risk events by rule and severity"
    caption = (
        "Every record of <code>risk_events</code>: pre-trade rejections (one WARN event per failed rule), "
        "kill-switch trips and trading-state changes (CRITICAL), bad venue reports. One row per rule "
        "(with its count), colour = severity, marker shape = account. x: event time of the input "
        "that caused the event."
    )
    if not data.events:
        why = "risk_events is empty: no rejection, halt or anomaly in this run"
        return _no_data_plot(path, title, caption, why)
    counts = Counter(e.rule for e in data.events)
    rules = sorted(counts, key=lambda r: (counts[r], r))
    accounts = sorted({e.account for e in data.events})
    fig = _figure(1.6 + 0.42 * len(rules))
    ax = fig.add_subplot()
    for sev in Severity:
        for k, acct in enumerate(accounts):
            mine = [e for e in data.events if e.severity is sev and e.account == acct]
            if mine:
                ax.scatter(_dates([e.ts for e in mine]), [rules.index(e.rule) for e in mine],
                           color=SEVERITY_COLOURS[sev], marker=ACCOUNT_MARKERS[k % len(ACCOUNT_MARKERS)],
                           s=40, alpha=0.8, edgecolors="black", linewidths=0.4,
                           label=f"{sev.value} {acct} ({len(mine)})")
    ax.set_yticks(range(len(rules)), [f"{r} ({counts[r]})" for r in rules], fontsize=8)
    ax.set_ylim(-0.7, len(rules) - 0.3)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.0, 0.5))
    ax.set_title(title, loc="left", fontsize=11)
    _set_span(ax, data)
    _time_axis(ax)
    return _saved(fig, path, title, caption)


def order_to_fill_seconds(data: RunData) -> dict[str, list[float]]:
    """Return, per order type, seconds from the venue's NEW report to an order's first fill.

    Both timestamps come from the same venue, so they share a clock: market event time
    on the paper venue, the venue's TransactTime on FIX.
    """
    types = {o.order_id: o.order_type.value for o in data.orders if o.action is OrderAction.NEW}
    acked: dict[str, datetime] = {}
    first_fill: dict[str, datetime] = {}
    for rep in data.reports:
        if rep.status is ExecStatus.NEW:
            acked.setdefault(rep.order_id, rep.ts)
        if rep.last_qty > 0:
            first_fill.setdefault(rep.order_id, rep.ts)
    out: dict[str, list[float]] = defaultdict(list)
    for oid, filled in first_fill.items():
        if oid in acked:
            out[types.get(oid, "unknown")].append(max(0.0, (filled - acked[oid]).total_seconds()))
    return dict(out)


def _pct_text(values: Sequence[float] | np.ndarray, unit: str) -> str:
    arr = np.asarray(values, dtype=float)
    p50, p99 = percentile(arr.tolist(), 50), percentile(arr.tolist(), 99)
    return f"n={arr.size:,}  p50={p50:,.3g} {unit}  p99={p99:,.3g} {unit}  max={arr.max():,.3g} {unit}"


def _log_bins(values: np.ndarray, n: int = 30) -> np.ndarray:
    positive = values[values > 0]
    lo = float(positive.min()) if positive.size else 1e-3
    hi = max(float(values.max()), lo * 10)
    return np.geomspace(lo / 1.2, hi * 1.2, n)


def plot_latency(data: RunData, path: Path) -> Plot:
    """Draw Job C's decision time, order-to-fill time and Job D's ack/fill percentiles."""
    title = "Latency"
    caption = (
        "Left: time Job C took to decide each signal (<code>risk_decisions.latency_us</code>, WALL "
        "clock inside the process). Middle: from the venue's NEW report to the order's first fill "
        "(<code>venue_fills</code>; both stamps come from the venue's clock: on the paper venue that is "
        "market EVENT time, i.e. how long the market took to trade at the order's price, not a system "
        "latency; on FIX it is the venue's wall clock). Orders filled at the very timestamp of their "
        "ack cannot go on a log axis: they are counted in the panel's label. Right: Job D's send-to-ack "
        "and send-to-fill percentiles per metrics window (<code>execution_metrics</code>, WALL clock, "
        "x = end of the window). Signal-to-ack is not drawn: signals carry market event time while a "
        "FIX venue stamps wall time, and the paper venue acks at the order's own event time (0 by "
        "construction)."
    )
    fig = _figure(4.2)
    left, mid, right = fig.subplots(1, 3)
    lat = np.array([d.latency_us for d in data.decisions], dtype=float)
    if lat.size:
        left.hist(lat, bins=_log_bins(lat), color="C0")
        left.set_xscale("log")
        left.set_title("Job C decision time (wall clock)", loc="left", fontsize=10)
        left.set_xlabel(f"µs per signal (log)\n{_pct_text(lat, 'µs')}", fontsize=8)
        left.set_ylabel("signals")
    else:
        _no_data(left, "Job C decision time (wall clock)", "risk_decisions is empty")
    waits = order_to_fill_seconds(data)
    if waits:
        kinds = sorted(waits)
        everything = np.concatenate([np.asarray(waits[k], dtype=float) for k in kinds])
        bins = _log_bins(everything)
        labels = [f"{k}: {len(waits[k])} orders, {sum(v == 0 for v in waits[k])} at 0 s" for k in kinds]
        mid.hist([[v for v in waits[k] if v > 0] for k in kinds], bins=bins, stacked=True,
                 color=[f"C{i}" for i in range(len(kinds))], label=labels)
        mid.set_xscale("log")
        mid.set_title("venue NEW → first fill (venue clock)", loc="left", fontsize=10)
        mid.set_xlabel(f"seconds (log)\n{_pct_text(everything, 's')}", fontsize=8)
        mid.set_ylabel("orders")
        mid.legend(fontsize=7, loc="upper right")
    else:
        _no_data(mid, "venue NEW → first fill", "no order was acknowledged and filled")
    _plot_metrics(right, data.metrics)
    for ax in (left, mid, right):
        ax.grid(alpha=0.3)
    fig.suptitle(title, x=0.01, ha="left", fontsize=11)
    return _saved(fig, path, title, caption, has_data=bool(lat.size or waits or data.metrics))


METRIC_FIGURES = (
    ("ack_p50_ms", "ack p50", "o", "-"), ("ack_p99_ms", "ack p99", "o", ":"),
    ("fill_p50_ms", "fill p50", "s", "-"), ("fill_p99_ms", "fill p99", "s", ":"),
)


def _plot_metrics(ax: Axes, metrics: list[ExecutionMetrics]) -> None:
    name = "Job D send → ack / fill (wall clock)"
    drawn: list[ExecutionMetrics] = []
    for i, venue in enumerate(sorted({m.venue for m in metrics})):
        rows = sorted((m for m in metrics if m.venue == venue), key=lambda m: m.ts)
        for j, (attr, label, marker, ls) in enumerate(METRIC_FIGURES):
            pts = [(m.ts, float(getattr(m, attr))) for m in rows if getattr(m, attr) is not None]
            if pts:
                drawn += rows
                ax.plot(_dates([t for t, _ in pts]), [v for _, v in pts], marker=marker, ls=ls,
                        color=f"C{(i * len(METRIC_FIGURES) + j) % 10}",
                        label=f"{venue} {label} (last {pts[-1][1]:,.3g} ms)")
    if not drawn:
        _no_data(ax, name, "execution_metrics has no percentiles")
        return
    ax.set_yscale("log")
    ax.set_ylabel("ms per window (log)")
    ax.legend(fontsize=7, loc="best")
    first, last = min(m.ts for m in drawn), max(m.ts for m in drawn)
    pad = timedelta(seconds=max(m.window_s for m in drawn))
    ax.set_xlim(float(mdates.date2num(first - pad)), float(mdates.date2num(last + pad)))
    ax.set_title(f"{name}\n{len({m.ts for m in drawn})} window(s) of {pad.total_seconds():g} s", loc="left",
                 fontsize=10)
    ax.xaxis.set_major_locator(mdates.AutoDateLocator(minticks=3, maxticks=6))
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%H:%M:%S", tz=UTC))
    ax.set_xlabel(f"wall time (UTC) on {first:%Y-%m-%d}, window end", fontsize=9)
