"""The report's HTML page: the run's figures in tables, and the plots beside them."""

from __future__ import annotations

import html
from collections import Counter, defaultdict
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from schemas import (
    ExecStatus,
    OrderAction,
    PortfolioState,
    Severity,
)
from tradeflow.report.load import RunData
from tradeflow.report.plots import Plot
from tradeflow.settings import Profile, Settings

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
