"""The operator console's cost and speed: the pipeline with and without it, in one run.

Each trial runs the whole pipeline (A, B x2, C, D paper; every job serving metrics, in
both arms) on a fresh embedded store over the same synthetic market, fed at ``--rate``
ticks/s (0: as fast as the writer goes), and times it from the first tick written to
the moment it has drained (every tick through Job A, every signal decided). Trials
alternate without and with the console; the best of each arm is compared
(``throughput_ratio``, with / without).

In the console arm, ``tradeflow console`` runs as its own process with headless
Chromium (Selenium) showing the page, and a probe changes a control row twice a second
(scope ``strategy:bench_probe``, state ACTIVE: nothing trades under that strategy) with
a numbered reason. A MutationObserver on the page's audit list records when each reason
appears (``Date.now()``, the same clock as the writer's ``time.time()`` on this
machine): ``console_update_p99_ms`` is table row written -> page shows it.

Usage: ``python bench/console.py [--ticks N] [--rate R] [--trials K] [--screenshots DIR]``.
``--screenshots DIR`` only takes the docs' screenshots (no figures): a slower run with
the console, a shot mid-run, then a HALT from the page and a shot of the audit list.
The last line printed is one JSON object.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import _root  # noqa: F401 - first: puts the repository root on sys.path
from selenium.webdriver.common.by import By

from bench.harness import report, workdir
from connectors.feeds import SyntheticMarket
from connectors.registry import Connectors
from connectors.settings import Settings, load_settings
from operators.stats import percentile
from schemas import Control, MarketData, TradingState
from tests.console_browser import ConsoleServer, chrome, wait_for
from tradeflow.pipeline import Pipeline, demo_strategies, pipeline_jobs, process_cpu_s, seed

PROBE_SCOPE = "strategy:bench_probe"
WATCH_AUDIT = """
window.__probeSeen = {};
const seen = () => {
  for (const tr of document.querySelectorAll('#audit tbody tr[data-reason]')) {
    const m = /^probe (\\d+)$/.exec(tr.dataset.reason);
    if (m && !(m[1] in window.__probeSeen)) window.__probeSeen[m[1]] = Date.now();
  }
};
new MutationObserver(seen).observe(document.querySelector('#audit tbody'), {childList: true, subtree: true});
seen();
"""


def _cpu_s(pid: int) -> float:
    """Return the CPU seconds (user + system) a process and its reaped children used so far."""
    return process_cpu_s(pid, children=True) or 0.0


def _tree(pid: int) -> list[int]:
    """Return ``pid`` and every live descendant of it."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            rest = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(rest[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def paced(ticks: list[MarketData], conn: Connectors, rate: float) -> int:
    """Write ``ticks`` into market_data at ``rate`` per second (0: at once), in 50 ms batches."""
    writer = conn.writer("market_data")
    batch = max(1, int(rate / 20)) if rate else 2000
    started = time.monotonic()
    try:
        for i in range(0, len(ticks), batch):
            if rate:
                due = started + i / rate
                if (lag := due - time.monotonic()) > 0:
                    time.sleep(lag)
            writer.write(ticks[i:i + batch])
    finally:
        writer.close()
    return len(ticks)


class Probe:
    """Changes the probe control row every ``every`` seconds; remembers when each was written."""

    def __init__(self, settings: Settings, every: float = 0.5) -> None:
        self.conn = Connectors(settings)
        self.every = every
        self.written: dict[int, float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, name="probe", daemon=True)

    def run(self) -> None:
        n = 0
        while not self.stop.wait(self.every):
            n += 1
            row = Control(scope=PROBE_SCOPE, state=TradingState.ACTIVE, reason=f"probe {n}",
                          updated_by="bench", ts=datetime.now(UTC))
            writer = self.conn.writer("control")
            self.written[n] = time.time() * 1000
            writer.write([row])
            writer.close()


@contextmanager
def console_open(settings: Settings, pipe: Pipeline, work: Path) -> Iterator[tuple[ConsoleServer, Any]]:
    """The console process and a browser showing it (audit list watched)."""
    console = ConsoleServer(settings.data_dir, pipe.metrics_targets, work / "console.log")
    browser = None
    try:
        browser = chrome()
        browser.get(console.url)
        wait_for("the page's first update", lambda: browser.execute_script(
            "return window.tfConsole && window.tfConsole.updates > 0"))
        browser.execute_script(WATCH_AUDIT)
        yield console, browser
    finally:
        if browser is not None:
            browser.quit()
        console.stop()


def trial(work: Path, name: str, ticks: list[MarketData], symbols: list[str], rate: float,
          with_console: bool) -> dict[str, Any]:
    """Run the pipeline over ``ticks``; return its rate and, with the console, the update latencies."""
    settings = load_settings(data_dir=work / name / "data", profile="local")
    conn = Connectors(settings)
    configs = demo_strategies()
    seed(conn, configs, symbols)
    pipe = Pipeline(settings, pipeline_jobs(configs), work / name / "logs", metrics=True)
    out: dict[str, Any] = {}
    try:
        pipe.start()
        with console_open(settings, pipe, work / name) if with_console else _nothing() as opened:
            probe = Probe(settings) if with_console else None
            if probe is not None:
                probe.thread.start()
            cpu0 = _cpu_now(opened)
            started = time.monotonic()
            fed = paced(ticks, conn, rate)

            def drained() -> bool:
                pipe.check_alive()
                sizes = pipe.sizes()
                return (sizes["sma_wide"] + sizes["dead_letters"] >= fed
                        and sizes["risk_decisions"] >= sizes["trade_signals"])

            wait_for("the pipeline to drain", drained, 900, 0.05)
            out["seconds"] = time.monotonic() - started
            cpu1 = _cpu_now(opened)
            out["cpu_s"] = {k: round(cpu1[k] - cpu0.get(k, 0.0), 2) for k in cpu1}
            out["ticks_per_s"] = fed / out["seconds"]
            if probe is not None and opened is not None:
                probe.stop.set()
                probe.thread.join(5)
                last = max(probe.written, default=0)
                _, browser = opened
                wait_for("the last probe on the page", lambda: browser.execute_script(
                    f"return {last} in window.__probeSeen"), 10)
                seen = browser.execute_script("return window.__probeSeen")
                out["latencies_ms"] = [seen[str(n)] - t for n, t in probe.written.items() if str(n) in seen]
                out["probes"] = len(probe.written)
    finally:
        pipe.stop()
    return out


def _cpu_now(opened: tuple[ConsoleServer, Any] | None) -> dict[str, float]:
    """CPU seconds so far of the console process and of the browser (chromedriver and its tree)."""
    if opened is None:
        return {}
    console, browser = opened
    return {"console": _cpu_s(console.proc.pid),
            "browser": sum(_cpu_s(p) for p in _tree(browser.service.process.pid))}


@contextmanager
def _nothing() -> Iterator[None]:
    yield None


def screenshots(work: Path, out_dir: Path) -> None:
    """Take the docs' screenshots: the console during a demo-like run, then after a HALT."""
    market = SyntheticMarket(symbols=6, ticks=12_000, seed=7)
    ticks, symbols = list(market), market.symbol_names()
    settings = load_settings(data_dir=work / "shots" / "data", profile="local")
    conn = Connectors(settings)
    configs = demo_strategies()
    seed(conn, configs, symbols)
    pipe = Pipeline(settings, pipeline_jobs(configs), work / "shots" / "logs", metrics=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        pipe.start()
        with console_open(settings, pipe, work / "shots") as (console, browser):
            browser.set_window_size(1600, 1700)
            feeder = threading.Thread(target=paced, args=(ticks, conn, 400.0), daemon=True)
            feeder.start()
            wait_for("fills on the page", lambda: browser.find_elements(By.CSS_SELECTOR, "#fills tbody tr"),
                     120, 0.5)
            wait_for("the equity charts to grow", lambda: all(
                len(a["equity_series"]) >= 60 for a in console.state()["accounts"]), 120, 0.5)
            browser.save_screenshot(str(out_dir / "console-overview.png"))
            browser.find_element(By.ID, "token").send_keys(console.token)
            halt = 'tr[data-account="ACC-RSI"] button[data-state="HALTED"]'
            browser.find_element(By.CSS_SELECTOR, halt).click()
            browser.find_element(By.ID, "control-reason").send_keys("drawdown review before the close")
            who = browser.find_element(By.ID, "control-who")
            who.clear()
            who.send_keys("desk-lead")
            browser.save_screenshot(str(out_dir / "console-halt-dialog.png"))
            browser.find_element(By.ID, "control-confirm").click()
            applied = '#audit [data-job="execution"][data-applied]'
            wait_for("the jobs to read the halt", lambda: browser.find_elements(By.CSS_SELECTOR, applied), 60)
            state = 'tr[data-account="ACC-RSI"] [data-field="trading_state"]'
            wait_for("the account HALTED",
                     lambda: browser.find_element(By.CSS_SELECTOR, state).text == "HALTED", 60)
            browser.save_screenshot(str(out_dir / "console-halted.png"))
            browser.find_element(By.CSS_SELECTOR, "#fills tbody tr[data-explain]").click()
            wait_for("the decision in the side panel",
                     lambda: "rules (" in browser.find_element(By.ID, "panel-body").text, 30)
            browser.save_screenshot(str(out_dir / "console-explain.png"))
            feeder.join(120)
    finally:
        pipe.stop()
    report({"screenshots": sorted(p.name for p in out_dir.glob("console-*.png"))})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ticks", type=int, default=30_000)
    ap.add_argument("--symbols", type=int, default=20)
    ap.add_argument("--rate", type=float, default=2000.0, help="ticks/s fed (0: as fast as possible)")
    ap.add_argument("--trials", type=int, default=3, help="trials per arm, alternated")
    ap.add_argument("--screenshots", type=Path, help="only take the docs' screenshots into this directory")
    args = ap.parse_args()
    with workdir("bench-console-") as (work, _procs):
        if args.screenshots:
            screenshots(work, args.screenshots)
            return
        market = SyntheticMarket(symbols=args.symbols, ticks=args.ticks, seed=3)
        ticks, symbols = list(market), market.symbol_names()
        without: list[float] = []
        with_: list[float] = []
        latencies: list[float] = []
        probes = 0
        cpu: dict[str, float] = {}
        for i in range(args.trials):
            base = trial(work, f"without-{i}", ticks, symbols, args.rate, with_console=False)
            without.append(base["ticks_per_s"])
            on = trial(work, f"with-{i}", ticks, symbols, args.rate, with_console=True)
            with_.append(on["ticks_per_s"])
            latencies += on["latencies_ms"]
            probes += on["probes"]
            for k, v in on["cpu_s"].items():
                cpu[k] = cpu.get(k, 0.0) + v / on["seconds"] / args.trials
            print(f"trial {i}: without {base['ticks_per_s']:.0f} ticks/s, with console "
                  f"{on['ticks_per_s']:.0f} ticks/s, {len(on['latencies_ms'])} updates timed",
                  file=sys.stderr)
        p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
        report({
            "ticks": args.ticks,
            "feed_rate_ticks_per_s": args.rate or "max",
            "without_console_ticks_per_s": [round(x) for x in without],
            "with_console_ticks_per_s": [round(x) for x in with_],
            "throughput_ratio": round(max(with_) / max(without), 3),
            "console_update_p50_ms": None if p50 is None else round(p50, 1),
            "console_update_p99_ms": None if p99 is None else round(p99, 1),
            "console_update_max_ms": round(max(latencies), 1) if latencies else None,
            "console_updates_timed": len(latencies),
            "console_updates_missed": probes - len(latencies),
            "console_cpu_cores": round(cpu.get("console", 0.0), 3),
            "browser_cpu_cores": round(cpu.get("browser", 0.0), 3),
        })


if __name__ == "__main__":
    main()
