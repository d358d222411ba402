"""The ``tradeflow`` command (also ``python -m tradeflow``).

Subcommands: ``demo`` (the README's main command), ``feed``, ``indicators``,
``positions``, ``tail``, ``show``, ``instruments load``, ``close``, ``console`` (the
operator web page), and the ones listed in README's command table. Each prints a clear
error and exits 2 on bad input instead of a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.base import ConnectorError
from connectors.feeds import FeedError, SyntheticMarket, read_frame, replay, ticks_from_frame
from connectors.progress import market_writer
from connectors.registry import Connectors
from schemas import STREAMS, DecodeError, Kind, decode, spec
from tradeflow.settings import Settings, load_settings


class UsageError(Exception):
    """Bad arguments or input: printed as ``error: ...`` with exit code 2."""


def _settings(args: argparse.Namespace, **extra: object) -> Settings:
    overrides: dict[str, object] = dict(extra)
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "profile", None):
        overrides["profile"] = args.profile
    return load_settings(**overrides)


# --- demo -------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the whole pipeline (A, B x2, C, D on the paper venue) over a market; summarise."""
    from tradeflow.pipeline import PipelineError, parse_venues, print_summary, run_pipeline, stop_process

    try:
        venues = parse_venues(args.venues)
    except ValueError as exc:
        raise UsageError(f"--venues: {exc}") from None

    data_dir = args.data_dir or Path("runs") / datetime.now(UTC).strftime("demo-%Y%m%dT%H%M%SZ")
    settings = load_settings(data_dir=data_dir, profile=args.profile or "local")
    run_name = Path(data_dir).name.replace("-", "_").lower()
    if settings.profile.value == "kafka" and not settings.kafka.topic_prefix:
        # each demo gets its own topics on a shared broker
        settings = settings.model_copy(
            update={"kafka": settings.kafka.model_copy(update={"topic_prefix": f"{run_name}."})}
        )
    if settings.profile.value == "fluss" and settings.fluss.database == "tradeflow":
        settings = settings.model_copy(
            update={"fluss": settings.fluss.model_copy(update={"database": run_name})}
        )
    if args.input:
        frame = read_frame(Path(args.input))
        ticks, total = ticks_from_frame(frame), len(frame)
        symbols = sorted(frame["symbol"].astype(str).unique())
    else:
        market = SyntheticMarket(symbols=args.symbols, ticks=args.ticks, seed=args.seed)
        ticks, total, symbols = iter(market), args.ticks, market.symbol_names()
    print(f"tradeflow demo: {total:,} ticks, {len(symbols)} symbols, data in {data_dir}")
    console = None
    ports: dict[str, int] | None = None
    if args.console is not None:
        from tradeflow.pipeline import demo_strategies, listen_port, pipeline_jobs, start_console

        ports = {job.name: listen_port() for job in pipeline_jobs(demo_strategies(), venues)}
        console = start_console(settings, args.console, [f"127.0.0.1:{p}" for p in ports.values()])
    try:
        counts = run_pipeline(
            settings, ticks, total, symbols, speed=args.speed or None, progress=not args.quiet,
            venues=venues, metrics_ports=ports,
        )
    except PipelineError as exc:
        if console is not None:
            stop_process(console)
        raise UsageError(f"{exc}\n(job logs: {Path(data_dir) / 'logs'})") from None
    print_summary(counts)
    try:
        from tradeflow.report import build_report
    except ModuleNotFoundError as exc:  # the report is an extra: pip install 'tradeflow[report]'
        print(f"\nreport: not written ({exc.name} is not installed; pip install 'tradeflow[report]')")
    else:
        index = build_report(settings, Path(data_dir) / "report")
        print(f"\nreport: {index}")
    print(f"data and job logs: {data_dir}  (tradeflow tail/show --data-dir {data_dir} ...)")
    if console is not None:
        print(f"\nconsole: still serving http://127.0.0.1:{args.console}/ over the finished run "
              "(the jobs have stopped); Ctrl-C to stop it")
        try:
            console.wait()
        finally:
            stop_process(console)
    return 0



# --- feed -------------------------------------------------------------------------


def cmd_feed(args: argparse.Namespace) -> int:
    """Write ticks (synthetic, from a file, or from a FIX venue) into market_data."""
    if args.fix:
        return _feed_fix(args)
    conn = Connectors(_settings(args))
    lateness = timedelta(milliseconds=args.lateness_ms)
    if args.input:
        frame = read_frame(Path(args.input))
        ticks, total = ticks_from_frame(frame, lateness=lateness), len(frame)
    else:
        market = SyntheticMarket(
            symbols=args.symbols, ticks=args.ticks, seed=args.seed, lateness=lateness
        )
        ticks, total = iter(market), args.ticks
    writer = market_writer(conn)
    if args.resume:
        done = conn.size("market_data")
        print(f"resuming after {done} ticks already in market_data", file=sys.stderr)
        for _ in range(done):
            next(ticks, None)
        total -= done
    n = replay(
        ticks, writer, total=total, speed=args.speed, progress=not args.quiet, close=not args.keep_open
    )
    writer.close()
    print(f"wrote {n} ticks to market_data")
    return 0


def _feed_fix(args: argparse.Namespace) -> int:
    """Subscribe at the FIX venue (TRADEFLOW_FIX__HOST/PORT) and write its trades until stopped."""
    import signal
    import threading

    from connectors.fix.marketdata import FixMarketDataFeed

    symbols = [s.strip().upper() for s in (args.fix_symbols or "").split(",") if s.strip()]
    if not symbols:
        raise UsageError("--fix needs --fix-symbols SYM1,SYM2,...")
    settings = _settings(args)
    md_dir = Path(settings.data_dir) / "fix-md"
    fix = settings.fix.model_copy(update={
        "sender_comp_id": args.fix_comp_id,
        "store_dir": md_dir / "session",
        "reset_on_logon": True,
        "reconnect_initial_s": args.fix_reconnect_s,
        "reconnect_max_s": max(args.fix_reconnect_s, settings.fix.reconnect_max_s),
    })
    conn = Connectors(settings)
    writer, dead = conn.writer("market_data"), conn.writer("dead_letters")
    feed = FixMarketDataFeed(
        fix, symbols, writer, dead, args.fix_state or md_dir / "state.json",
        market_data_reader=conn.reader("market_data"),
        lateness=timedelta(milliseconds=args.lateness_ms),
    )
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    print(f"feed --fix: {fix.host}:{fix.port} as {fix.sender_comp_id}, symbols {','.join(symbols)}; "
          f"state {feed.state_path}", file=sys.stderr, flush=True)
    if feed.stats.skipped_on_restore:
        print(f"resuming: {feed.stats.skipped_on_restore} ticks already in market_data past the saved state",
              file=sys.stderr, flush=True)
    feed.run(seconds=args.seconds, stop=stop)
    writer.close()
    dead.close()
    status = feed.status()
    print(json.dumps(status), flush=True)
    if status["halted"]:
        print(f"error: the market data session stopped: {status['halted']}", file=sys.stderr)
        return 1
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    """Write the demo's tables (accounts, strategies, limits, instruments) for a market."""
    from tradeflow.pipeline import demo_strategies, parse_venues, seed

    try:
        venues = parse_venues(args.venues)
    except ValueError as exc:
        raise UsageError(f"--venues: {exc}") from None
    if args.input:
        symbols = sorted(read_frame(Path(args.input))["symbol"].astype(str).unique())
    else:
        symbols = SyntheticMarket(symbols=args.symbols, ticks=1, seed=args.seed).symbol_names()
    seed(Connectors(_settings(args)), demo_strategies(), symbols, venues)
    print(f"seeded the demo's tables for {len(symbols)} symbols and venues {', '.join(n for n, _ in venues)}")
    return 0


# --- indicators / positions -----------------------------------------------------------


def cmd_indicators(args: argparse.Namespace) -> int:
    """Compute indicators for a ticks file with the flow's operator code."""
    from operators.indicators import IndicatorConfig
    from tradeflow.indicators_cmd import parse_periods, run

    defaults = IndicatorConfig()
    try:
        config = IndicatorConfig(
            sma=parse_periods(args.sma, defaults.sma),
            ema=parse_periods(args.ema, defaults.ema),
            rsi=parse_periods(args.rsi, defaults.rsi),
            vwap=not args.no_vwap,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.output == "-":
        n = run(Path(args.input), sys.stdout, config)
    else:
        with open(args.output, "w", newline="") as out:
            n = run(Path(args.input), out, config)
        print(f"wrote {n} rows to {args.output}", file=sys.stderr)
    return 0


def cmd_positions(args: argparse.Namespace) -> int:
    """Replay a CSV of fills through the accounting code; print positions."""
    from tradeflow.positions_cmd import FillsFileError, run

    try:
        run(Path(args.fills), sys.stdout)
    except FillsFileError as exc:
        raise UsageError(str(exc)) from None
    return 0


# --- tail / show / close -------------------------------------------------------------


def cmd_tail(args: argparse.Namespace) -> int:
    """Print a stream's records as JSON lines (oldest first, or only new with --follow)."""
    sp = spec(args.stream)
    conn = Connectors(_settings(args))
    reader = conn.reader(args.stream)
    ends = reader.end_offsets()
    offsets = {p: (ends[p] if args.new_only else max(0, ends[p] - args.n) if args.n else 0) for p in ends}
    while True:
        got = 0
        for part, off in offsets.items():
            for rec in reader.read(part, off, 1000):
                got += 1
                offsets[part] = rec.offset + 1
                print(_render(sp.model, rec.value, part, rec.offset), flush=True)
        if not args.follow and got == 0:
            break
        if got == 0:
            time.sleep(0.2)
    reader.close()
    return 0


def cmd_latency(args: argparse.Namespace) -> int:
    """Print the per-hop latency of a run (feed->A->B->C->D->ack): stamps and write times."""
    from operators.latency import breakdown, render

    conn = Connectors(_settings(args))

    def written(stream: str) -> Iterator[tuple[Any, datetime | None]]:
        model = spec(stream).model
        for rec in conn.scan(stream):
            try:
                yield decode(model, rec.value), rec.written_at
            except DecodeError:
                continue

    figures = breakdown(written("sma_wide"), written("trade_signals"), written("validated_orders"),
                        written("venue_fills"))
    print(render(figures))
    if not any(f.count for f in figures):
        print("no hop measured: the run's records carry no entered_at (fed by `tradeflow feed`/`demo` "
              "with this build?) or its store keeps no write times (the fluss profile does not)")
    return 0


def _render(model: type, raw: bytes, part: int, offset: int) -> str:
    try:
        body = json.loads(raw)
    except json.JSONDecodeError:
        body = raw.decode("utf-8", errors="replace")
    return json.dumps({"partition": part, "offset": offset, "value": body})


def cmd_show(args: argparse.Namespace) -> int:
    """Print a table's latest row per key (or one key) as JSON lines."""
    sp = spec(args.table)
    if sp.kind is not Kind.TABLE:
        raise UsageError(f"{args.table} is a log stream, not a table; use: tradeflow tail {args.table}")
    reader = Connectors(_settings(args)).reader(args.table)
    if args.key:
        raw = reader.latest(args.key)
        if raw is None:
            raise UsageError(f"no row with key {args.key!r} in {args.table}")
        print(raw.decode())
    else:
        for _key, raw in reader.scan_latest():
            print(raw.decode())
    reader.close()
    return 0


JOBS = {
    "indicators": "flows.indicators:build_flow()",
    "portfolio_risk": "flows.portfolio_risk:build_flow()",
    "execution": "flows.execution:build_flow()",
}


def job_target(job: str) -> str:
    """Return the bytewax import string of a job (``strategy:<id>`` for Job B)."""
    if job.startswith("strategy:"):
        return f"flows.strategy:build_flow({job.removeprefix('strategy:')!r})"
    try:
        return JOBS[job]
    except KeyError:
        known = ", ".join([*JOBS, "strategy:<id>"])
        raise UsageError(f"unknown job {job!r}; jobs: {known}") from None


def cmd_run(args: argparse.Namespace) -> int:
    """Run one job the way production does: ``python -m bytewax.run`` in this process."""
    import os
    import shlex

    cmd = [sys.executable, "-m", "bytewax.run", job_target(args.job)]
    env = dict(os.environ)
    if args.profile:
        env["TRADEFLOW_PROFILE"] = args.profile
    if args.data_dir:
        env["TRADEFLOW_DATA_DIR"] = str(args.data_dir)
    if args.follow:
        env["TRADEFLOW_FOLLOW"] = "true"
    if args.shard:
        from connectors.sharding import Shard, ShardError

        try:
            env["TRADEFLOW_SHARD"] = str(Shard.parse(args.shard))
        except ShardError as exc:
            raise UsageError(str(exc)) from None
    if args.recovery:
        args.recovery.mkdir(parents=True, exist_ok=True)
        if not (args.recovery / "part-0.sqlite3").exists():
            import subprocess

            subprocess.run(  # noqa: S603 - our interpreter, our module
                [sys.executable, "-m", "bytewax.recovery", str(args.recovery), "1"], check=True
            )
        cmd += ["-r", str(args.recovery), "-s", str(args.snapshot_s), "-b", "0"]
    print("equivalent: " + " ".join(shlex.quote(c) for c in ["python", *cmd[1:]]), file=sys.stderr)
    os.execve(sys.executable, cmd, env)  # noqa: S606 - replaces this process, as a launcher does
    return 0  # not reached


def cmd_reshard(args: argparse.Namespace) -> int:
    """Rebuild the per-shard state of a job for a new shard count, offline."""
    from tradeflow.reshard import ReshardError, environment, reshard

    env = environment()
    if args.profile:
        env["TRADEFLOW_PROFILE"] = args.profile
    if args.data_dir:
        env["TRADEFLOW_DATA_DIR"] = str(args.data_dir)
    try:
        reshard(args.job, args.old, args.new, args.recovery_root, env)
    except ReshardError as exc:
        raise UsageError(str(exc)) from None
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    """Print per job process: alive, shard, partitions, lag, snapshot age, dead letters."""
    from tradeflow.status import as_json, scrape, table

    rows = [scrape(t, args.timeout) for t in args.targets]
    print(as_json(rows) if args.json else table(rows))
    return 0 if all(r.alive for r in rows) else 1


def cmd_infra(args: argparse.Namespace) -> int:
    """Start, stop or inspect the real servers (Kafka, Fluss, the FIX venue)."""
    from tradeflow.infra import manage

    root: Path = args.dir
    if args.action == "up":
        servers = tuple(args.only.split(",")) if args.only else manage.SERVERS
        state = manage.up(root, servers, secure=args.secure)
        print(f"servers up (state in {root / 'infra.json'}); point tradeflow at them with:")
        for key, value in sorted(state.env.items()):
            # "#job X" entries: each job's own principal (secured Kafka), to run it with.
            print(f"# {key[1:]}: {value}" if key.startswith("#") else f"export {key}={value}")
    elif args.action == "down":
        stopped = manage.down(root)
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    else:
        for name, alive in sorted(manage.status(root).items()) or [("(none)", False)]:
            print(f"{name:<8} {'up' if alive else 'down'}")
    return 0


def cmd_report_cli(args: argparse.Namespace) -> int:
    """Build the HTML run report from a run's output streams and tables."""
    try:
        from tradeflow.report import cmd_report
    except ModuleNotFoundError as exc:
        raise UsageError(
            f"the report needs the report extra ({exc.name} is not installed): "
            "pip install 'tradeflow[report]'"
        ) from None

    data_dir = args.data_dir or _settings(args).data_dir
    index = cmd_report(data_dir, args.out, profile=args.profile)
    print(f"report: {index}")
    return 0


def cmd_risk(args: argparse.Namespace) -> int:
    """Audit Job C from its logs: explain a decision, replay the decisions, shadow limits."""
    from tradeflow.risk_tools import RiskToolError

    try:
        code: int = args.risk_func(args, _settings(args))
    except RiskToolError as exc:
        raise UsageError(str(exc)) from None
    return code


def cmd_instruments(args: argparse.Namespace) -> int:
    """Load a CSV of instruments into the instruments table (all rows or none)."""
    from tradeflow.instruments import InstrumentFileError, read_instruments

    try:
        rows = read_instruments(args.file, datetime.now(UTC))
    except InstrumentFileError as exc:
        raise UsageError(str(exc)) from None
    writer = Connectors(_settings(args)).writer("instruments")
    try:
        writer.write(rows)
    finally:
        writer.close()
    halted = sum(1 for r in rows if r.status.value != "TRADING")
    print(f"loaded {len(rows)} instruments into instruments ({halted} not TRADING)")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    """Serve the operator console: a live page of accounts, orders, risk, health and controls."""
    from tradeflow.console import ConsoleError, serve

    settings = _settings(args)
    host = args.host or settings.console.host
    port = settings.console.port if args.port is None else args.port
    metrics = tuple(args.metrics) if args.metrics else settings.console.metrics
    try:
        serve(settings, host=host, port=port, metrics=metrics)
    except ConsoleError as exc:
        raise UsageError(str(exc)) from None
    except ModuleNotFoundError as exc:  # the web stack is an extra: pip install 'tradeflow[console]'
        raise UsageError(
            f"the console needs the console extra ({exc.name} is not installed): "
            "pip install 'tradeflow[console]'"
        ) from None
    return 0


def cmd_close(args: argparse.Namespace) -> int:
    """Mark a stream finished, so bounded readers stop at its end."""
    writer = Connectors(_settings(args)).writer(args.stream)
    writer.close_stream()
    writer.close()
    print(f"closed {args.stream}")
    return 0


# --- parser -------------------------------------------------------------------------


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", type=Path, help="embedded store directory [env: TRADEFLOW_DATA_DIR]")
    p.add_argument("--profile", choices=["local", "kafka", "fluss"], help="[env: TRADEFLOW_PROFILE]")


def _command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    func: Callable[[argparse.Namespace], int],
    about: str,
    *,
    common: bool = True,
) -> argparse.ArgumentParser:
    """Add the subcommand ``name`` run by ``func``, with the store options unless not ``common``."""
    p = sub.add_parser(name, help=about)
    if common:
        _common(p)
    p.set_defaults(func=func)
    return p


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``tradeflow`` command."""
    parser = argparse.ArgumentParser(prog="tradeflow", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    streams = sorted(STREAMS)

    p = _command(sub, "demo", cmd_demo, "run a synthetic market through the pipeline; print a summary",
                 common=False)
    p.add_argument("--ticks", type=int, default=10_000)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--input", help="replay this CSV/Parquet of ticks or bars instead")
    p.add_argument("--data-dir", type=Path, help="default: a new runs/demo-<time> directory")
    p.add_argument("--profile", choices=["local", "kafka", "fluss"], help="data plane (default local)")
    p.add_argument(
        "--speed", type=float, default=20.0,
        help="replay pace, event time vs wall clock (default 20x; 0 = as fast as possible, a backtest "
             "decided in event time, the same every run, when every venue is paper)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument(
        "--venues", default="paper",
        help="one Job D per venue, NAME[=KIND] comma-separated, KIND paper or fix (default paper); "
             "with several, routes split the accounts between them (fix: start the venue first, "
             "tradeflow infra up --only fix)",
    )
    p.add_argument(
        "--console", type=int, nargs="?", const=8765, metavar="PORT",
        help="also serve the operator console on 127.0.0.1:PORT (default 8765) while the demo runs, "
        "and after it until Ctrl-C",
    )

    p = _command(sub, "feed", cmd_feed, "write ticks into market_data")
    p.add_argument("--input", help="CSV/Parquet of ticks or bars (default: synthetic)")
    p.add_argument("--ticks", type=int, default=50_000)
    p.add_argument("--symbols", type=int, default=20)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--speed", type=float, help="pace by event time (1.0 = real time); default full speed")
    p.add_argument("--lateness-ms", type=int, default=0, help="allowed lateness in the watermark")
    p.add_argument("--resume", action="store_true", help="skip the ticks already in market_data")
    p.add_argument("--keep-open", action="store_true", help="do not close the stream at the end")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--fix", action="store_true",
                   help="subscribe to market data at the FIX venue (TRADEFLOW_FIX__HOST/PORT) instead; "
                        "runs until Ctrl-C/SIGTERM or --seconds")
    p.add_argument("--fix-symbols", help="with --fix: comma-separated symbols to subscribe to")
    p.add_argument("--fix-comp-id", default="TRADEFLOWMD",
                   help="with --fix: our SenderCompID, a session of its own (default TRADEFLOWMD)")
    p.add_argument("--fix-state", type=Path,
                   help="with --fix: restart state file (default <data dir>/fix-md/state.json)")
    p.add_argument("--fix-reconnect-s", type=float, default=0.5, help="with --fix: first reconnect delay")
    p.add_argument("--seconds", type=float, help="with --fix: stop after this many seconds")

    p = _command(sub, "seed", cmd_seed, "write the demo's tables (accounts, strategies, limits, instruments)")
    p.add_argument("--input", help="CSV/Parquet of ticks: seed for its symbols")
    p.add_argument("--symbols", type=int, default=20, help="else: the synthetic market's first N symbols")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--venues", default="paper", help="NAME[=KIND],... as demo --venues (default paper)")

    p = _command(sub, "indicators", cmd_indicators, "compute indicators for a ticks file into a CSV",
                 common=False)
    p.add_argument("--input", required=True, help="CSV/Parquet: time,symbol,price,volume")
    p.add_argument("--output", required=True, help="output CSV ('-' for stdout)")
    p.add_argument("--sma", help="SMA periods, e.g. 5,10,20 (default 5,10,20,50)")
    p.add_argument("--ema", help="EMA periods (default 12,26)")
    p.add_argument("--rsi", help="RSI periods (default 14)")
    p.add_argument("--no-vwap", action="store_true", help="leave out the session VWAP column")

    p = _command(sub, "positions", cmd_positions,
                 "replay a CSV of fills; print positions per account/symbol", common=False)
    p.add_argument("--fills", required=True, help="CSV: ts,account,symbol,side,qty,price[,fee]")

    p = _command(sub, "tail", cmd_tail, "print a stream's records as JSON lines")
    p.add_argument("stream", choices=streams)
    p.add_argument("-n", type=int, default=0, help="only the last N per partition")
    p.add_argument("--new-only", action="store_true", help="start at the end")
    p.add_argument("-f", "--follow", action="store_true", help="keep waiting for new records")

    p = _command(sub, "show", cmd_show, "print a table's latest rows as JSON lines")
    p.add_argument("table", choices=[s for s in streams if STREAMS[s].kind is Kind.TABLE])
    p.add_argument("--key", help="only this primary key")

    p = _command(sub, "run", cmd_run, "run one job as production does (python -m bytewax.run ...)")
    p.add_argument("job", help="indicators, strategy:<id>, portfolio_risk or execution")
    p.add_argument("--follow", action="store_true", help="keep waiting for new input (a live job)")
    p.add_argument("--recovery", type=Path, help="recovery directory (created and initialised if new)")
    p.add_argument("--snapshot-s", type=int, default=5, help="snapshot interval with --recovery")
    p.add_argument(
        "--shard", metavar="I/N",
        help="run as shard I of N: only the partitions p %% N == I of the job's keyed inputs, "
        "with its own --recovery [env: TRADEFLOW_SHARD]",
    )

    p = _command(sub, "reshard", cmd_reshard,
                 "offline: rebuild a job's per-shard state for a new shard count")
    p.add_argument("job", help="portfolio_risk (the one job whose state is rebuilt from its journal)")
    p.add_argument("--from", dest="old", type=int, required=True, help="shard count now (its shards stopped)")
    p.add_argument("--to", dest="new", type=int, required=True, help="new shard count (<= partitions)")
    p.add_argument("--recovery-root", type=Path, required=True,
                   help="holds one recovery store per shard, <I>-of-<N>; the new ones are created")

    p = _command(sub, "status", cmd_status,
                 "per job and shard: alive, partitions, lag, last snapshot (metrics)", common=False)
    p.add_argument("targets", nargs="+", metavar="HOST:PORT",
                   help="metrics endpoints of the jobs (TRADEFLOW_METRICS_PORT of each process)")
    p.add_argument("--json", action="store_true", help="print one JSON array instead of a table")
    p.add_argument("--timeout", type=float, default=3.0, help="seconds to wait for each endpoint")

    p = _command(sub, "infra", cmd_infra, "start, stop or inspect the real servers from deploy/",
                 common=False)
    p.add_argument("action", choices=["up", "down", "status"])
    p.add_argument("--dir", type=Path, default=Path(".tradeflow/infra"), help="where servers keep data")
    p.add_argument("--only", help="comma-separated subset of kafka,fluss,fix (default all; venue = fix)")
    p.add_argument("--secure", action="store_true",
                   help="Kafka with TLS, SASL/SCRAM and per-job ACLs (docs/security.md)")

    p = sub.add_parser("instruments", help="reference data: load a CSV of instruments into the table")
    isub = p.add_subparsers(dest="instruments_command", required=True)
    p = _command(isub, "load", cmd_instruments,
                 "validate FILE.csv and upsert its rows (nothing if a row is bad)")
    p.add_argument("file", type=Path, help="CSV with a header: symbol,tick_size,lot_size[,min_qty,...]")

    p = _command(sub, "close", cmd_close, "mark a stream finished (bounded readers stop at its end)")
    p.add_argument("stream", choices=streams)

    _command(sub, "latency", cmd_latency,
             "per-hop latency of a run (feed->A->B->C->D->ack) as a table, in ms")

    p = _command(sub, "report", cmd_report_cli,
                 "build an HTML report with plots of a run (index.html + PNGs)")
    p.add_argument("--out", type=Path, help="output directory (default: <data-dir>/report)")

    p = _command(sub, "console", cmd_console,
                 "serve the operator console: a live web page, with the kill switch")
    p.add_argument("--host", help="address to bind (default 127.0.0.1; another needs a token set) "
                   "[env: TRADEFLOW_CONSOLE__HOST]")
    p.add_argument("--port", type=int, help="port (default 8765) [env: TRADEFLOW_CONSOLE__PORT]")
    p.add_argument("--metrics", nargs="+", metavar="HOST:PORT",
                   help="the jobs' metrics endpoints, for health and control acknowledgements "
                   "[env: TRADEFLOW_CONSOLE__METRICS]")

    from tradeflow.risk_tools import add_arguments as add_risk_arguments

    p = sub.add_parser("risk", help="audit Job C: explain a decision, replay the log, shadow limits")
    add_risk_arguments(p, _common)
    p.set_defaults(func=cmd_risk)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UsageError, FeedError, ConnectorError, FileNotFoundError, KeyError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
