"""Audit Job C from its logs: explain a decision, replay the decisions, shadow candidate limits.

DESIGN §3a "Trust the log": every signal has one ``risk_decisions`` record that names
the rules evaluated, the limits version in force and the input offsets its state
reflected. These tools read the logs through the connectors registry (any profile):

* ``explain(settings, ident)``: find the decision for a signal id or an order id and
  say why it went that way (``tradeflow risk explain ID``).
* ``replay(settings, ...)``: fold Job C's input journal (``risk_journal``, every input
  each account book applied, in its order) through fresh ``AccountBook``s and diff
  every decision against the record (``tradeflow risk replay``).
* ``shadow(settings, limits_file)``: the same replay, each decision also evaluated with
  a candidate limits set; report which orders would change decision and by which rule
  (``tradeflow risk shadow --limits FILE``).

The replay always rebuilds state from the start of the journal (limits "as they were at
the time" come from the journaled changelog rows); a time or offset range only selects
which decisions are compared and reported. See docs/risk-audit.md.

The package: ``logs`` reads the logs, ``why`` explains, ``replay_report`` and
``shadow_report`` replay, ``cli`` adds the ``tradeflow risk`` subcommands.
"""

from operators.limits import RiskToolError, load_limits
from tradeflow.risk_tools.cli import add_arguments, run_explain, run_replay, run_shadow
from tradeflow.risk_tools.logs import load_log, read_logged
from tradeflow.risk_tools.replay_report import LimitChange, ReplayReport, Window, render_replay, replay
from tradeflow.risk_tools.shadow_report import ShadowChange, ShadowReport, render_shadow, shadow
from tradeflow.risk_tools.why import explain, find_decisions

__all__ = [
    "LimitChange", "ReplayReport", "RiskToolError", "ShadowChange", "ShadowReport", "Window",
    "add_arguments", "explain", "find_decisions", "load_limits", "load_log", "read_logged",
    "render_replay", "render_shadow", "replay", "run_explain", "run_replay", "run_shadow", "shadow",
]
