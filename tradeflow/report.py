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
"""

from __future__ import annotations

import html
import math
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from matplotlib import dates as mdates
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from connectors.base import ConnectorError, StoredRecord, StreamReader
from connectors.registry import Connectors
from operators.stats import percentile
from schemas import (
    DeadLetter,
    ExecStatus,
    ExecutionMetrics,
    OrderAction,
    PortfolioState,
    PositionState,
    Record,
    RiskDecision,
    RiskEvent,
    Severity,
    SmaWide,
    TradeSignal,
    ValidatedOrder,
    VenueFill,
    decode,
)
from schemas.base import DecodeError
from tradeflow.settings import Profile, Settings, load_settings

R = TypeVar("R", bound=Record)

PLOTS = ("equity.png", "positions.png", "prices.png", "risk_events.png", "latency.png")
"""The image files of a report, in page order."""

DPI = 100
WIDTH_IN = 11.5
"""Figures are 1150 px wide: shown at their natural size on a 1280 px wide page."""

SEVERITY_COLOURS = {Severity.INFO: "#1f77b4", Severity.WARN: "#ff7f0e", Severity.CRITICAL: "#d62728"}
ACCOUNT_MARKERS = ("o", "s", "D", "^", "v", "P", "X", "*")


# --- reading ------------------------------------------------------------------------


@dataclass
class RunData:
    """What a report is drawn from: the output streams of one run, decoded."""

    portfolio: list[PortfolioState] = field(default_factory=list)
    positions: list[PositionState] = field(default_factory=list)
    reports: list[VenueFill] = field(default_factory=list)
    signals: list[TradeSignal] = field(default_factory=list)
    orders: list[ValidatedOrder] = field(default_factory=list)
    decisions: list[RiskDecision] = field(default_factory=list)
    events: list[RiskEvent] = field(default_factory=list)
    metrics: list[ExecutionMetrics] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    prices: dict[str, list[SmaWide]] = field(default_factory=dict)
    """sma_wide rows of the symbols chosen for the price plot, in ``seq`` order."""
    rows_by_symbol: Counter[str] = field(default_factory=Counter)
    """sma_wide rows per symbol (counted from the keys, without decoding)."""
    market_ticks: int = 0
    span: tuple[datetime, datetime] | None = None
    """First and last event time of sma_wide: the market the run saw."""
    notes: list[str] = field(default_factory=list)
    """Problems met while reading (undecodable records, unreadable streams)."""

    @property
    def fills(self) -> list[VenueFill]:
        """Return the venue reports that are fills (``last_qty > 0``)."""
        return [f for f in self.reports if f.last_qty > 0]


class _Reader:
    """Reads whole streams through the registry, noting what could not be read."""

    def __init__(self, settings: Settings, notes: list[str]) -> None:
        self.settings = settings
        self.conn = Connectors(settings)
        self.notes = notes
        self.attempted: set[str] = set()
        self.failed: set[str] = set()

    def _open(self, stream: str) -> StreamReader | None:
        self.attempted.add(stream)
        try:
            return self.conn.reader(stream)
        except ConnectorError as exc:
            self.failed.add(stream)
            self.notes.append(f"{stream}: could not be read ({exc})")
            return None

    def _exists(self, stream: str) -> bool:
        # The embedded store opens (and so creates) a stream's file on first read; a
        # report must not write into the run it describes, so a missing file is empty.
        if self.settings.profile_for(stream) is not Profile.LOCAL:
            return True
        return (self.settings.data_dir / f"{self.settings.physical_name(stream)}.db").exists()

    def raw(self, stream: str) -> Iterator[StoredRecord]:
        """Yield every stored record of a stream, partition by partition, in offset order."""
        reader = self._open(stream) if self._exists(stream) else None
        if reader is None:
            return
        try:
            for part in range(reader.partitions):
                offset = 0
                while batch := reader.read(part, offset, 5000):
                    yield from batch
                    offset = batch[-1].offset + 1
        finally:
            reader.close()

    def count(self, stream: str) -> int:
        """Return the number of records of a log stream (from its end offsets)."""
        reader = self._open(stream) if self._exists(stream) else None
        if reader is None:
            return 0
        try:
            return sum(reader.end_offsets().values())
        finally:
            reader.close()

    def records(
        self, stream: str, model: type[R], keep: Callable[[str | None], bool] | None = None
    ) -> list[R]:
        """Return a stream's records that decode (and whose key ``keep`` accepts)."""
        out: list[R] = []
        bad: Counter[str] = Counter()
        for rec in self.raw(stream):
            if keep is not None and not keep(rec.key):
                continue
            try:
                out.append(decode(model, rec.value))
            except DecodeError as exc:
                bad[str(exc)[:120]] += 1
        if bad:
            reason, _ = bad.most_common(1)[0]
            self.notes.append(
                f"{stream}: {sum(bad.values())} record(s) did not decode and were left out "
                f"(e.g. {reason})"
            )
        return out


def _price_symbols(data: RunData, n: int) -> list[str]:
    by_fills = Counter(f.symbol for f in data.fills)
    chosen = [s for s, _ in sorted(by_fills.items(), key=lambda kv: (-kv[1], kv[0]))][:n]
    for sym, _ in sorted(data.rows_by_symbol.items(), key=lambda kv: (-kv[1], kv[0])):
        if len(chosen) >= n:
            break
        if sym not in chosen:
            chosen.append(sym)
    return [s for s in chosen if data.rows_by_symbol.get(s)]


def load_run(settings: Settings, *, price_symbols: int = 3) -> RunData:
    """Read the output streams and tables of a run into a ``RunData``."""
    data = RunData()
    rd = _Reader(settings, data.notes)
    data.portfolio = rd.records("portfolio_state", PortfolioState)
    data.positions = rd.records("positions_state", PositionState)
    data.reports = rd.records("venue_fills", VenueFill)
    data.signals = rd.records("trade_signals", TradeSignal)
    data.orders = rd.records("validated_orders", ValidatedOrder)
    data.decisions = rd.records("risk_decisions", RiskDecision)
    data.events = rd.records("risk_events", RiskEvent)
    data.metrics = rd.records("execution_metrics", ExecutionMetrics)
    data.dead_letters = rd.records("dead_letters", DeadLetter)
    data.market_ticks = rd.count("market_data")

    # sma_wide is the big one: count rows per symbol from the keys, decode only the
    # first and last row of each partition (the market's span) and the chosen symbols.
    edges: list[SmaWide] = []
    previous: StoredRecord | None = None
    for rec in rd.raw("sma_wide"):
        data.rows_by_symbol[rec.key or ""] += 1
        if previous is None or previous.partition != rec.partition:
            edges += _decoded_or_none(previous) + _decoded_or_none(rec)
        previous = rec
    edges += _decoded_or_none(previous)
    if edges:
        data.span = (min(r.ts for r in edges), max(r.ts for r in edges))
    chosen = set(_price_symbols(data, price_symbols))
    rows = rd.records("sma_wide", SmaWide, keep=lambda key: key in chosen)
    for row in sorted(rows, key=lambda r: (r.symbol, r.seq)):
        data.prices.setdefault(row.symbol, []).append(row)
    if rd.attempted and rd.failed == rd.attempted:
        raise ConnectorError("no output stream of the run could be read: " + "; ".join(data.notes))
    return data


def _decoded_or_none(rec: StoredRecord | None) -> list[SmaWide]:
    if rec is None:
        return []
    try:
        return [decode(SmaWide, rec.value)]
    except DecodeError:
        return []


# --- plotting helpers ---------------------------------------------------------------


def _figure(height_in: float) -> Figure:
    fig = Figure(figsize=(WIDTH_IN, height_in), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> None:
    fig.savefig(path, dpi=DPI, facecolor="white")


def _no_data(ax: Axes, title: str, why: str) -> None:
    ax.set_title(title, loc="left", fontsize=11)
    ax.text(0.5, 0.5, f"no data\n{why}", ha="center", va="center", fontsize=13, color="#777777",
            transform=ax.transAxes)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_color("#cccccc")


def _no_data_figure(path: Path, title: str, why: str, height_in: float = 2.4) -> None:
    fig = _figure(height_in)
    _no_data(fig.add_subplot(), title, why)
    _save(fig, path)


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
        _no_data_figure(path, title, "portfolio_state is empty")
        return Plot(path.name, title, caption, False)
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
    _save(fig, path)
    return Plot(path.name, title, caption, True)


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
        _no_data_figure(path, title, "positions_state is empty")
        return Plot(path.name, title, caption, False)
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
    _save(fig, path)
    return Plot(path.name, title, caption, True)


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
        _no_data_figure(path, title, "sma_wide is empty")
        return Plot(path.name, title, caption, False)
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
    _save(fig, path)
    return Plot(path.name, title, caption, True)


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
        _no_data_figure(path, title, "risk_events is empty: no rejection, halt or anomaly in this run")
        return Plot(path.name, title, caption, False)
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
    _save(fig, path)
    return Plot(path.name, title, caption, True)


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
    _save(fig, path)
    return Plot(path.name, title, caption, bool(lat.size or waits or data.metrics))


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


# --- the page -----------------------------------------------------------------------


def _money(value: Decimal | float) -> str:
    return f"{value:,.2f}"


def _table(head: Sequence[str] | None, rows: Sequence[Sequence[object]], numeric_from: int = 1) -> str:
    if not rows:
        return '<p class="empty">no data</p>'
    cells = "".join(
        f'<th class="{"num" if i >= numeric_from else ""}">{html.escape(h)}</th>'
        for i, h in enumerate(head or ())
    )
    body = []
    for row in rows:
        tds = "".join(
            f'<td class="{"num" if i >= numeric_from else ""}">{html.escape(str(v))}</td>'
            for i, v in enumerate(row)
        )
        body.append(f"<tr>{tds}</tr>")
    thead = f"<thead><tr>{cells}</tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{''.join(body)}</tbody></table>"


def _run_rows(data: RunData) -> list[tuple[str, str]]:
    decisions = Counter(d.decision.value for d in data.decisions)
    actions = Counter(o.action.value for o in data.orders)
    fills = data.fills
    venue_rejects = sum(1 for r in data.reports if r.status is ExecStatus.REJECTED)
    severities = Counter(e.severity.value for e in data.events)
    span = "-"
    if data.span is not None:
        lo, hi = data.span
        span = f"{lo:%Y-%m-%d %H:%M:%S} → {hi:%H:%M:%S} UTC ({(hi - lo).total_seconds():,.0f} s)"
    return [
        ("market event time", span),
        ("ticks (market_data)", f"{data.market_ticks:,}"),
        ("indicator rows (sma_wide)", f"{sum(data.rows_by_symbol.values()):,} over "
                                      f"{len(data.rows_by_symbol)} symbols"),
        ("signals", f"{len(data.signals):,}"),
        ("risk decisions",
         f"{len(data.decisions):,} ({decisions['PASS']:,} pass, {decisions['FAIL']:,} fail)"),
        ("orders", f"{actions['NEW']:,} new, {actions['CANCEL']:,} cancels"),
        ("venue reports", f"{len(data.reports):,}"),
        ("fills", f"{len(fills):,} (qty {sum((f.last_qty for f in fills), Decimal(0)):,}, "
                  f"notional {_money(sum((f.last_qty * f.last_px for f in fills), Decimal(0)))})"),
        ("venue rejects", f"{venue_rejects:,}"),
        ("risk events", ", ".join(f"{n:,} {s}" for s, n in sorted(severities.items())) or "0"),
        ("dead letters", f"{len(data.dead_letters):,}"),
    ]


def _strategy_rows(data: RunData) -> list[tuple[object, ...]]:
    strategy_of = {s.signal_id: s.strategy_id for s in data.signals}
    order_strategy = {o.order_id: o.strategy_id or "?" for o in data.orders if o.action is OrderAction.NEW}
    stats: dict[str, Counter[str]] = defaultdict(Counter)
    accounts: dict[str, set[str]] = defaultdict(set)
    for s in data.signals:
        stats[s.strategy_id]["signals"] += 1
        accounts[s.strategy_id].add(s.account)
    for d in data.decisions:
        stats[strategy_of.get(d.signal_id, "?")][d.decision.value] += 1
    for strat in order_strategy.values():
        stats[strat]["orders"] += 1
    qty: dict[str, Decimal] = defaultdict(Decimal)
    for f in data.fills:
        strat = order_strategy.get(f.order_id, "?")
        stats[strat]["fills"] += 1
        qty[strat] += f.last_qty
    return [
        (strat, ", ".join(sorted(accounts[strat])) or "-", c["signals"], c["PASS"], c["FAIL"], c["orders"],
         c["fills"], f"{qty[strat]:,}")
        for strat, c in sorted(stats.items())
    ]


def _account_rows(data: RunData) -> list[tuple[object, ...]]:
    by_account: dict[str, list[PortfolioState]] = defaultdict(list)
    for row in data.portfolio:
        by_account[row.account].append(row)
    fills = Counter(f.account for f in data.fills)
    out: list[tuple[object, ...]] = []
    for acct, rows in sorted(by_account.items()):
        first, last = rows[0], rows[-1]
        out.append((
            acct, _money(first.equity), _money(last.equity), _money(last.equity - first.equity),
            _money(last.realized_pnl), _money(last.unrealized_pnl), _money(last.gross_exposure),
            f"{last.leverage:,.3f}", _money(max(r.drawdown for r in rows)), fills[acct],
            last.open_orders, last.trading_state.value,
        ))
    return out


def _reject_rows(data: RunData) -> list[tuple[object, ...]]:
    rejects = Counter(e.rule for e in data.events if e.severity is not Severity.CRITICAL and e.signal_id)
    critical = Counter(e.rule for e in data.events if e.severity is Severity.CRITICAL)
    other = Counter(
        e.rule for e in data.events if e.severity is not Severity.CRITICAL and not e.signal_id
    )
    rows: list[tuple[object, ...]] = [(rule, "rejected signal", n) for rule, n in rejects.most_common()]
    rows += [(rule, "critical", n) for rule, n in critical.most_common()]
    rows += [(rule, "other", n) for rule, n in other.most_common()]
    return rows


CSS = """
body { font-family: "DejaVu Sans", Helvetica, Arial, sans-serif; color: #222; margin: 0;
       background: #f6f6f4; }
main { max-width: 1200px; margin: 0 auto; padding: 16px 20px 40px; background: #fff; }
h1 { font-size: 24px; margin: 4px 0 4px; }
h2 { font-size: 18px; margin: 28px 0 8px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
p.meta { color: #666; margin: 0 0 12px; font-size: 13px; }
.grid { display: flex; flex-wrap: wrap; gap: 8px 28px; align-items: flex-start; }
table { border-collapse: collapse; font-size: 13px; margin: 6px 0 10px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e4e4e4; text-align: left; }
th { background: #f0f0ee; }
.num { text-align: right; font-variant-numeric: tabular-nums; }
figure { margin: 10px 0 24px; }
figure img { display: block; max-width: 100%; height: auto; border: 1px solid #e4e4e4; }
figcaption { font-size: 13px; color: #444; margin-top: 6px; line-height: 1.4; }
p.empty { color: #888; font-style: italic; }
.notes { background: #fff6e0; border: 1px solid #f0d48a; padding: 6px 12px; font-size: 13px; }
code { font-size: 12px; background: #f3f3f3; padding: 0 3px; }
"""


def render_html(settings: Settings, data: RunData, plots: Sequence[Plot], generated: datetime) -> str:
    """Return the report page: summary tables, then each plot with its caption."""
    where = (
        f"data dir {settings.data_dir}" if settings.profile is Profile.LOCAL
        else f"profile {settings.profile.value}"
    )
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>tradeflow run report</title>",
        f"<style>{CSS}</style></head><body><main>",
        "<h1>tradeflow run report</h1>",
        f'<p class="meta">{html.escape(where)} · profile {settings.profile.value} · generated '
        f"{generated:%Y-%m-%d %H:%M:%S} UTC (wall clock) from the run's output streams and tables</p>",
    ]
    if data.notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in data.notes)
        parts.append(f'<div class="notes"><b>Reading problems</b><ul>{items}</ul></div>')
    parts += [
        "<h2>Summary</h2>",
        '<div class="grid"><div>',
        _table(None, _run_rows(data)),
        "</div><div>",
        "<b>Rejects and risk events by rule</b>",
        _table(["rule", "kind", "count"], _reject_rows(data), numeric_from=2),
        "</div></div>",
        "<b>Per strategy</b>",
        _table(["strategy", "account", "signals", "passed", "rejected", "orders", "fills", "filled qty"],
               _strategy_rows(data), numeric_from=2),
        "<b>Per account</b> (first and latest row of <code>portfolio_state</code>; PnL = equity change)",
        _table(["account", "start equity", "equity", "PnL", "realised", "unrealised", "gross exposure",
                "leverage", "max drawdown", "fills", "open orders", "state"], _account_rows(data)),
    ]
    if data.dead_letters:
        dl = Counter((d.source_stream, d.job) for d in data.dead_letters)
        parts += ["<b>Dead letters</b>",
                  _table(["source stream", "job", "count"],
                         [(s, j or "-", n) for (s, j), n in dl.most_common()], numeric_from=2)]
    for plot in plots:
        parts += [
            f"<h2>{html.escape(plot.title)}</h2>",
            f'<figure><img src="{html.escape(plot.file)}" alt="{html.escape(plot.title)}">',
            f"<figcaption>{plot.caption}</figcaption></figure>",
        ]
    parts.append("</main></body></html>")
    return "\n".join(parts) + "\n"


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
