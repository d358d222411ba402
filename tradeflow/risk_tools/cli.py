"""The ``tradeflow risk`` subcommands: ``explain``, ``replay`` and ``shadow``."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

from connectors.settings import Settings
from tradeflow.risk_tools.replay_report import render_replay, replay
from tradeflow.risk_tools.shadow_report import render_shadow, shadow
from tradeflow.risk_tools.why import explain


def _when(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time: {text!r}") from None
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (e.g. 'Z'): {text!r}")
    return ts


def _range_args(p: argparse.ArgumentParser, *, offsets: bool) -> None:
    p.add_argument("--from-ts", type=_when, help="only decisions at or after this event time (ISO, zone)")
    p.add_argument("--to-ts", type=_when, help="only decisions before this event time")
    if offsets:
        p.add_argument("--from-offset", type=int, help="only risk_decisions offsets >= N (every partition)")
        p.add_argument("--to-offset", type=int, help="only risk_decisions offsets < N")
    p.add_argument("--account", action="append", help="only this account (repeatable)")
    p.add_argument("--show", type=int, default=20, help="list at most N items per section")
    p.add_argument("--json", action="store_true", help="print the report as one JSON object")


def add_arguments(parser: argparse.ArgumentParser, common: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add the ``explain``, ``replay`` and ``shadow`` subcommands to the ``risk`` parser.

    ``common`` adds the shared ``--data-dir``/``--profile`` options. Each subcommand
    sets ``risk_func(args, settings) -> exit code``.
    """
    sub = parser.add_subparsers(dest="risk_command", required=True)
    p = sub.add_parser("explain", help="why a signal or order was passed or refused")
    common(p)
    p.add_argument("ident", help="a signal id or an order id")
    p.set_defaults(risk_func=run_explain)
    p = sub.add_parser("replay", help="re-run Job C over its input logs; diff the decisions")
    common(p)
    _range_args(p, offsets=True)
    p.set_defaults(risk_func=run_replay)
    p = sub.add_parser("shadow", help="how candidate limits would have decided the recorded signals")
    common(p)
    p.add_argument("--limits", type=Path, required=True, help="JSON or YAML file of limit overrides")
    _range_args(p, offsets=False)
    p.set_defaults(risk_func=run_shadow)


def run_explain(args: argparse.Namespace, settings: Settings) -> int:
    """Print the explanation of one decision."""
    print(explain(settings, args.ident))
    return 0


def run_replay(args: argparse.Namespace, settings: Settings) -> int:
    """Print a replay report; exit 1 when a decision was not reproduced."""
    report = replay(settings, from_ts=args.from_ts, to_ts=args.to_ts, from_offset=args.from_offset,
                    to_offset=args.to_offset, accounts=args.account)
    if args.json:
        print(json.dumps({**asdict(report), "ok": report.ok, "reproduced": report.reproduced,
                          "decisions_per_s": report.decisions_per_s}, default=str))
    else:
        print(render_replay(report, show=args.show))
    return 0 if report.ok else 1


def run_shadow(args: argparse.Namespace, settings: Settings) -> int:
    """Print a shadow-limits report."""
    report = shadow(settings, args.limits, from_ts=args.from_ts, to_ts=args.to_ts, accounts=args.account)
    if args.json:
        print(json.dumps({**asdict(report), "would_refuse": len(report.would_refuse),
                          "would_pass": len(report.would_pass), "by_rule": report.by_rule()}, default=str))
    else:
        print(render_shadow(report, show=args.show))
    return 0
