"""The operator console in a real browser, over a real pipeline (issue 16).

A live pipeline (Jobs A, B x2, C, D on the embedded store, each serving metrics) runs
over a synthetic market; ``tradeflow console`` runs as its own process; headless
Chromium (Debian's chromium + chromium-driver, driven by Selenium) opens the page. The
test checks the page against portfolio_state and positions_state, halts an account
from the page, and follows the halt through the control table, the audit list, the
jobs' acknowledgements and Job C's next decision, all in one page load. Without
chromium or chromium-driver the test FAILS (it never skips): ``.ci/run`` installs them.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from connectors.feeds import SyntheticMarket, replay
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from schemas import (
    Control,
    Decision,
    MarketData,
    PortfolioState,
    PositionState,
    RiskDecision,
    Side,
    TradeSignal,
    TradingState,
    decode,
)
from tests.console_browser import BrowserMissing, ConsoleServer, chrome, wait_for
from tests.helpers import read_all
from tradeflow.pipeline import Pipeline, demo_strategies, pipeline_jobs, seed

TICKS = 2500
LIVE_TICKS = 3000
"""Fed while the test clicks HALT (about 1,000 ticks/s), so the page is updating under the pointer."""
ACCOUNT = "ACC-SMA"
REASON = "desk review: runaway strategy (test)"


@dataclass
class Running:
    settings: Settings
    conn: Connectors
    pipe: Pipeline
    console: ConsoleServer
    browser: WebDriver
    rest: list[MarketData]


def _latest(conn: Connectors, table: str) -> dict[str, bytes]:
    reader = conn.reader(table)
    try:
        return dict(reader.scan_latest())
    finally:
        reader.close()


def _drained(pipe: Pipeline, fed: int) -> bool:
    sizes = pipe.sizes()
    return (sizes["sma_wide"] + sizes["dead_letters"] >= fed
            and sizes["risk_decisions"] >= sizes["trade_signals"])


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    root = tmp_path_factory.mktemp("console")
    settings = load_settings(data_dir=root / "data", profile="local")
    conn = Connectors(settings)
    market = SyntheticMarket(symbols=4, ticks=TICKS + LIVE_TICKS, seed=11)
    ticks = list(market)
    configs = demo_strategies()
    seed(conn, configs, market.symbol_names())
    pipe = Pipeline(settings, pipeline_jobs(configs), root / "logs", metrics=True)
    console: ConsoleServer | None = None
    browser: WebDriver | None = None
    try:
        pipe.start()
        writer = conn.writer("market_data")
        fed = replay(iter(ticks[:TICKS]), writer, total=TICKS, progress=False, close=False)
        writer.close()

        def settled() -> bool:
            pipe.check_alive()
            return _drained(pipe, fed) and len(_latest(conn, "portfolio_state")) == 2

        wait_for("the pipeline to take the market and both accounts to trade", settled, 300, 0.25)
        console = ConsoleServer(settings.data_dir, pipe.metrics_targets, root / "console.log")
        try:
            browser = chrome()
        except BrowserMissing as exc:
            pytest.fail(str(exc))
        yield Running(settings, conn, pipe, console, browser, ticks[TICKS:])
    finally:
        if browser is not None:
            browser.quit()
        if console is not None:
            console.stop()
        pipe.stop()


# --- reading the page -----------------------------------------------------------------


# The page updates while it is read, so it is read in one script (no element handle can go
# stale between two reads): rows by data-key, cells by data-field -> data-value.
READ_ROWS = """
const out = {};
for (const tr of document.querySelectorAll(arguments[0])) {
  const row = {};
  for (const cell of tr.querySelectorAll('[data-field]')) {
    if (arguments[1].includes(cell.dataset.field)) row[cell.dataset.field] = cell.dataset.value;
  }
  out[tr.dataset.key] = row;
}
return out;
"""


def _rows(browser: WebDriver, css: str, fields: list[str]) -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = browser.execute_script(READ_ROWS, css, fields)
    return rows


ACCOUNT_FIELDS = ["equity", "cash", "realized_pnl", "unrealized_pnl", "gross_exposure", "leverage",
                  "drawdown"]
POSITION_FIELDS = ["net_qty", "avg_px", "realized_pnl", "unrealized_pnl", "market_value"]


def page_accounts(browser: WebDriver) -> dict[str, dict[str, str]]:
    return _rows(browser, "#accounts tbody tr[data-key]", [*ACCOUNT_FIELDS, "trading_state"])


def table_accounts(conn: Connectors) -> dict[str, dict[str, str]]:
    out = {}
    for key, raw in _latest(conn, "portfolio_state").items():
        p = decode(PortfolioState, raw)
        out[key] = {f: format(getattr(p, f), "f") for f in ACCOUNT_FIELDS}
        out[key]["trading_state"] = p.trading_state.value
    return out


def page_positions(browser: WebDriver) -> dict[str, dict[str, str]]:
    return _rows(browser, "#positions tbody tr[data-key]", POSITION_FIELDS)


def table_positions(conn: Connectors) -> dict[str, dict[str, str]]:
    out = {}
    for raw in _latest(conn, "positions_state").values():
        p = decode(PositionState, raw)
        out[f"{p.account}|{p.symbol}"] = {f: format(getattr(p, f), "f") for f in POSITION_FIELDS}
    return out


def shown(browser: WebDriver, css: str, attribute: str | None = None) -> str:
    """Return the text (or an attribute) of the first element matching ``css`` ("" if none)."""
    text: str | None = browser.execute_script(
        "const e = document.querySelector(arguments[0]);"
        "return e === null ? '' : (arguments[1] ? e.getAttribute(arguments[1]) : e.innerText.trim());",
        css, attribute)
    return text or ""


# --- the tests ----------------------------------------------------------------------------


def test_console_shows_the_tables_and_halts_an_account_from_the_page_without_a_reload(
        running: Running) -> None:
    browser, conn = running.browser, running.conn
    browser.get(running.console.url)
    browser.execute_script("window.__loadMarker = 'loaded-once';")

    # accounts and positions on the page are portfolio_state and positions_state (exact decimals)
    wait_for("the page's accounts to equal portfolio_state",
             lambda: page_accounts(browser) == table_accounts(conn) and len(table_accounts(conn)) == 2)
    wait_for("the page's positions to equal positions_state",
             lambda: page_positions(browser) == table_positions(conn) and table_positions(conn))
    equity = f'tr[data-account="{ACCOUNT}"] [data-field="equity"]'
    exact = Decimal(shown(browser, equity, "data-value"))
    assert Decimal(shown(browser, equity).replace(",", "")) == exact.quantize(Decimal("0.01"))
    assert browser.find_elements(By.CSS_SELECTOR, f'tr[data-account="{ACCOUNT}"] svg.spark polyline')
    wait_for("the health panel to list the five jobs alive",
             lambda: len(browser.find_elements(By.CSS_SELECTOR, "#health td.ok")) == 5)

    # HALT the account from its row (token, reason, who) while the market moves and the page updates
    feeder = threading.Thread(target=_feed_live, args=(running,), daemon=True)
    feeder.start()
    wait_for("the page to update with the live market",
             lambda: page_accounts(browser) != table_accounts(conn) or not feeder.is_alive())
    browser.find_element(By.ID, "token").send_keys(running.console.token)
    browser.find_element(
        By.CSS_SELECTOR, f'tr[data-account="{ACCOUNT}"] button[data-state="HALTED"]').click()
    wait_for("the control dialog", lambda: browser.find_element(By.ID, "control-dialog").is_displayed())
    browser.find_element(By.ID, "control-reason").send_keys(REASON)
    who = browser.find_element(By.ID, "control-who")
    who.clear()
    who.send_keys("test-operator")
    browser.find_element(By.ID, "control-confirm").click()
    wait_for("the dialog to close (the change accepted)",
             lambda: not browser.find_element(By.ID, "control-dialog").is_displayed())

    # the control row, with who and why
    def control_row() -> Control | None:
        raw = _latest(conn, "control").get(f"account:{ACCOUNT}")
        return decode(Control, raw) if raw else None

    row = wait_for("the control row", control_row, 10)
    assert (row.state, row.reason, row.updated_by) == (TradingState.HALTED, REASON, "test-operator (console)")

    # the audit entry, and the jobs that read it (C, D and B: Job B reads account scopes too)
    audit = f'#audit tr[data-scope="account:{ACCOUNT}"][data-state="HALTED"]'
    wait_for("the audit entry", lambda: browser.find_elements(By.CSS_SELECTOR, audit))
    assert shown(browser, audit, "data-reason") == REASON
    assert "test-operator (console)" in shown(browser, audit)
    for job in ("portfolio_risk", "execution", "strategy:sma_cross", "strategy:rsi_reversion"):
        read = f'{audit} [data-job="{job}"][data-applied]'
        wait_for(f"{job} to have read the halt",
                 lambda read=read: browser.find_elements(By.CSS_SELECTOR, read))

    # Job C: the account is HALTED in portfolio_state and on the page
    wait_for("portfolio_state to say HALTED",
             lambda: table_accounts(conn)[ACCOUNT]["trading_state"] == "HALTED", 30)
    state_cell = f'tr[data-account="{ACCOUNT}"] [data-field="trading_state"]'
    wait_for("the page to show the account HALTED", lambda: shown(browser, state_cell) == "HALTED", 10)

    # ... and refuses the account's next signal with TRADING_HALTED
    decision = _next_decision(running)
    assert decision.decision is Decision.FAIL
    failed = {r.rule for r in decision.rules if not r.passed}
    assert "TRADING_HALTED" in failed, failed

    feeder.join(60)
    # all of it in the page as first loaded
    assert browser.execute_script("return window.__loadMarker") == "loaded-once"
    assert browser.execute_script("return performance.getEntriesByType('navigation').length") == 1
    assert browser.execute_script("return window.tfConsole.updates") > 1


def _feed_live(running: Running) -> None:
    writer = running.conn.writer("market_data")
    try:
        for i in range(0, len(running.rest), 50):
            writer.write(running.rest[i:i + 50])
            time.sleep(0.05)  # the pace of a live feed, not a wait for a condition
    finally:
        writer.close()


def _next_decision(running: Running) -> RiskDecision:
    conn = running.conn
    ticks = [t for t in read_all(conn, "market_data") if isinstance(t, MarketData)]
    last = max(ticks, key=lambda t: t.ts)
    signal = TradeSignal(
        signal_id=f"console-test-{datetime.now(UTC).timestamp():.0f}", strategy_id="sma_cross",
        symbol=last.symbol, account=ACCOUNT, side=Side.BUY, qty=Decimal(10), ts=last.ts, ref_px=last.price,
    )
    writer = conn.writer("trade_signals")
    writer.write([signal])
    writer.close()

    def decided() -> RiskDecision | None:
        for d in read_all(conn, "risk_decisions"):
            if isinstance(d, RiskDecision) and d.signal_id == signal.signal_id:
                return d
        return None

    return wait_for("Job C's decision on the signal after the halt", decided, 60, 0.2)


def test_a_control_change_without_the_token_is_refused_and_changes_nothing(running: Running) -> None:
    console, conn = running.console, running.conn
    before = _latest(conn, "control")
    body = {"scope": "global", "state": "HALTED", "reason": "not allowed", "who": "mallory"}
    status, answer = console.post_control(body, {})
    assert status == 401, answer
    status, answer = console.post_control(body, {"X-Console-Token": "guessed"})
    assert status == 403, answer
    # the right token without the page's CSRF token is refused too
    status, answer = console.post_control(body, {"X-Console-Token": console.token})
    assert status == 403, answer
    assert re.search("CSRF", answer["error"])
    assert _latest(conn, "control") == before
    assert all(c["scope"] != "global" for c in console.state()["audit"])


def test_bad_input_reaches_the_dead_letters_panel_and_kills_nothing(running: Running) -> None:
    conn, console = running.conn, running.console
    writer = conn.writer("market_data")
    writer.write_raw([("SYM000", b"{not json")])
    writer.close()
    def listed() -> bool:
        return any(d["source_stream"] == "market_data" for d in console.state()["dead_letters"]["recent"])

    wait_for("the console to list the dead letter", listed)
    running.pipe.check_alive()
    assert console.proc.poll() is None

