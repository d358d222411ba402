"""Re-run Job C's account books over its input journal, and compare the decisions.

Pure domain code: it imports only schemas, the other domain modules and the standard
library. ``tradeflow/risk_tools/`` reads the logs and renders the reports.

Job C appends every input an account book takes to ``risk_journal`` before applying
it, and applies nothing else (``operators.sequencing``): each account's decisions are a
fold of its journal entries in ``seq`` order. So the replay is that fold, with a fresh
``AccountBook`` per account: no model of routing, batching or timing. A decision the
replay does not reproduce means the record or the journal was changed, or the book's
code differs from the one that decided.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any, TypeVar

from operators.accounting import MONEY
from operators.portfolio import AccountBook, InputPos
from operators.risk import CheckInput, evaluate
from operators.sequencing import Decoded, apply_entry, record_of
from schemas.base import Record
from schemas.journal import JournalEntry, JournalKind
from schemas.strategy import TradeSignal
from schemas.trading import (
    Account,
    PortfolioState,
    RiskDecision,
    RuleResult,
    SymbolLimit,
)

R = TypeVar("R", bound=Record)


@dataclass(frozen=True, slots=True)
class Logged(Decoded[R]):
    """A record and the position it was read from, named as Job C's decisions name it."""

    @property
    def where(self) -> str:
        """Return ``stream:partition``, the key of ``RiskDecision.input_offsets``."""
        return f"{self.stream}:{self.partition}"

    @property
    def pos(self) -> InputPos:
        """Return the position as the account book records it."""
        return InputPos(self.stream, self.partition, self.offset)


@dataclass
class RecordedLog:
    """Job C's journal, the signals and the recorded decisions, each in log order."""

    journal: list[Logged[JournalEntry]] = field(default_factory=list)
    signals: list[Logged[TradeSignal]] = field(default_factory=list)
    decisions: list[Logged[RiskDecision]] = field(default_factory=list)

    def account_ids(self) -> list[str]:
        """Return every account that has a journal entry, a signal or a decision."""
        ids = {x.record.account for x in self.journal}
        ids |= {x.record.account for x in self.signals}
        ids |= {x.record.account for x in self.decisions}
        return sorted(ids)


@dataclass(frozen=True)
class Replayed:
    """One signal as decided again, next to its recorded decision (None if none)."""

    signal: Logged[TradeSignal]
    recorded: Logged[RiskDecision] | None
    decision: RiskDecision
    check: CheckInput
    """What the rules looked at (the state just before the signal)."""
    account_row: Logged[Account] | None = None
    """The accounts row in force (where the limits came from)."""
    symbol_row: Logged[SymbolLimit] | None = None
    """The symbol_limits row in force for the signal's symbol."""


@dataclass(frozen=True)
class Difference:
    """One field on which a replayed decision differs from the recorded one."""

    signal_id: str
    account: str
    field: str
    """``decision``, ``order_id``, ``limits_version``, ``rules`` or ``<RULE>.passed|value|limit``."""
    recorded: str | None
    replayed: str | None


def compare(recorded: RiskDecision, replayed: RiskDecision) -> list[Difference]:
    """Return how ``replayed`` differs from ``recorded`` (decision, rules, limits version)."""
    out: list[Difference] = []

    def diff(name: str, a: object, b: object) -> None:
        if a != b:
            out.append(Difference(recorded.signal_id, recorded.account, name,
                                  None if a is None else str(a), None if b is None else str(b)))

    diff("decision", recorded.decision.value, replayed.decision.value)
    diff("order_id", recorded.order_id, replayed.order_id)
    diff("limits_version", recorded.limits_version, replayed.limits_version)
    theirs = {r.rule: r for r in replayed.rules}
    diff("rules", ",".join(r.rule for r in recorded.rules), ",".join(r.rule for r in replayed.rules))
    for rule in recorded.rules:
        other = theirs.get(rule.rule)
        if other is not None:
            diff(f"{rule.rule}.passed", rule.passed, other.passed)
            diff(f"{rule.rule}.value", rule.value, other.value)
            diff(f"{rule.rule}.limit", rule.limit, other.limit)
    return out


# --------------------------------------------------------------------- the replay


class _CapturingBook(AccountBook):
    """An account book that keeps what the rules looked at for the last signal.

    It publishes nothing but decisions, so it skips building portfolio_state rows (the
    largest cost of a mark): every rule, kill-switch check and state change is Job C's.
    """

    last_check: CheckInput | None = None
    _unpublished: PortfolioState | None = None

    def _check_input(self, signal: TradeSignal, order_id: str, market_ts: datetime | None) -> CheckInput:
        ctx = super()._check_input(signal, order_id, market_ts)
        self.last_check = ctx
        return ctx

    def portfolio_state(self, ts: datetime) -> PortfolioState:
        """Return a placeholder row: the replay compares decisions, not portfolio rows."""
        if self._unpublished is None:
            self._unpublished = super().portfolio_state(ts)
        return self._unpublished


def _logged(entry: JournalEntry) -> Logged[Any]:
    return Logged(record_of(entry), entry.stream, entry.partition, entry.offset)


def replay_account(
    account: str,
    entries: Iterable[Logged[JournalEntry]],
    recorded: dict[str, Logged[RiskDecision]],
) -> Iterator[Replayed]:
    """Fold one account's journal (in seq order, each seq once) through a fresh book.

    Yield every decision next to the recorded one (``recorded`` by signal id).
    """
    book = _CapturingBook(account, clock=lambda: 0)
    account_row: Logged[Account] | None = None
    symbol_rows: dict[str, Logged[SymbolLimit]] = {}
    by_seq = {x.record.seq: x.record for x in entries}
    for seq in sorted(by_seq):
        entry = by_seq[seq]
        outcome = apply_entry(book, entry)
        if entry.kind is JournalKind.ACCOUNT:
            account_row = _logged(entry)
        elif entry.kind is JournalKind.SYMBOL_LIMIT:
            row = _logged(entry)
            symbol_rows[row.record.symbol] = row
        if outcome.decision is None:
            continue
        check = book.last_check
        if check is None:  # pragma: no cover - on_signal always gathers it
            raise RuntimeError("a decision without its check input")
        signal: Logged[TradeSignal] = _logged(entry)
        yield Replayed(signal, recorded.get(signal.record.signal_id), outcome.decision, check,
                       account_row, symbol_rows.get(signal.record.symbol))


def replay_log(log: RecordedLog, *, accounts: Iterable[str] | None = None) -> Iterator[Replayed]:
    """Replay every account (or the given ones) of a recorded journal; yield every decision."""
    wanted = set(accounts) if accounts is not None else set(log.account_ids())
    journals: dict[str, list[Logged[JournalEntry]]] = {a: [] for a in sorted(wanted)}
    for x in log.journal:
        slot = journals.get(x.record.account)
        if slot is not None:
            slot.append(x)
    decisions: dict[str, dict[str, Logged[RiskDecision]]] = {a: {} for a in journals}
    for d in log.decisions:
        slot2 = decisions.get(d.record.account)
        if slot2 is not None:
            slot2.setdefault(d.record.signal_id, d)
    for account, entries in journals.items():
        yield from replay_account(account, entries, decisions[account])


# --------------------------------------------------------------------- shadow limits

ACCOUNT_LIMITS = (
    "max_order_notional", "max_order_qty", "max_gross_exposure", "max_leverage",
    "max_open_orders", "max_orders_per_second", "price_collar_bps",
)
"""Account fields a candidate limits set may override (the pre-trade limits)."""

SYMBOL_LIMITS = ("max_position_qty", "max_position_notional")
"""SymbolLimit fields a candidate limits set may override."""

ANY = "*"
"""Key that stands for every account, or every symbol, in a candidate limits set."""


class LimitsError(ValueError):
    """A candidate limits set names an unknown field or an invalid value."""


@dataclass(frozen=True)
class LimitOverrides:
    """A candidate limits set: Account and SymbolLimit fields to override, per account.

    ``accounts`` maps an account (or ``"*"``) to Account limit fields; ``symbols`` maps
    an account (or ``"*"``) to a symbol (or ``"*"``) to SymbolLimit fields. A value of
    None removes the limit. The most specific entry wins, field by field: account
    before ``"*"``, symbol before ``"*"``.
    """

    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    symbols: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    label: str = "candidate"

    @classmethod
    def from_mapping(cls, data: Any) -> LimitOverrides:
        """Build from parsed JSON/YAML; raise ``LimitsError`` on anything unexpected.

        Shape: ``{"label": ..., "accounts": {ACCOUNT|"*": {field: value, ...,
        "symbols": {SYMBOL|"*": {field: value}}}}}``.
        """
        if not isinstance(data, dict) or not isinstance(data.get("accounts"), dict):
            raise LimitsError('a limits file needs an "accounts" mapping (account or "*" -> limits)')
        unknown = set(data) - {"label", "accounts"}
        if unknown:
            raise LimitsError(f"unknown top-level keys {sorted(unknown)}; expected label, accounts")
        accounts: dict[str, dict[str, Any]] = {}
        symbols: dict[str, dict[str, dict[str, Any]]] = {}
        for account, body in data["accounts"].items():
            if not isinstance(body, dict):
                raise LimitsError(f"accounts.{account} must be a mapping of limit fields")
            fields = {k: v for k, v in body.items() if k != "symbols"}
            accounts[str(account)] = _checked(fields, ACCOUNT_LIMITS, f"accounts.{account}")
            per_symbol = body.get("symbols", {})
            if not isinstance(per_symbol, dict):
                raise LimitsError(f"accounts.{account}.symbols must map symbols to limit fields")
            symbols[str(account)] = {
                str(sym): _checked(lim, SYMBOL_LIMITS, f"accounts.{account}.symbols.{sym}")
                for sym, lim in per_symbol.items()
            }
        return cls(accounts, symbols, str(data.get("label", "candidate")))

    def account_fields(self, account: str) -> dict[str, Any]:
        """Return the Account fields overridden for ``account``."""
        return {**self.accounts.get(ANY, {}), **self.accounts.get(account, {})}

    def symbol_fields(self, account: str, symbol: str) -> dict[str, Any]:
        """Return the SymbolLimit fields overridden for ``account`` and ``symbol``."""
        out: dict[str, Any] = {}
        for acct in (ANY, account):
            for sym in (ANY, symbol):
                out.update(self.symbols.get(acct, {}).get(sym, {}))
        return out

    def account_row(self, row: Account | None) -> Account | None:
        """Return the account row with the candidate limits (None stays None: unknown account)."""
        if row is None:
            return None
        fields = self.account_fields(row.account)
        return Account.model_validate({**row.model_dump(), **fields}) if fields else row

    def symbol_row(self, row: SymbolLimit | None, account: str, symbol: str, ts: datetime
                   ) -> SymbolLimit | None:
        """Return the symbol's limits with the candidate ones (made up if none was in force)."""
        fields = self.symbol_fields(account, symbol)
        if not fields:
            return row
        if row is None:
            return SymbolLimit.model_validate({"account": account, "symbol": symbol, "ts": ts, **fields})
        return SymbolLimit.model_validate({**row.model_dump(), **fields})

    def row(self, row: Account | SymbolLimit) -> Account | SymbolLimit:
        """Return an accounts or symbol_limits row with the candidate limits in it."""
        swapped = (self.account_row(row) if isinstance(row, Account)
                   else self.symbol_row(row, row.account, row.symbol, row.ts))
        assert swapped is not None  # noqa: S101 - a row in gives a row out
        return swapped


def _checked(fields: dict[str, Any], allowed: tuple[str, ...], where: str) -> dict[str, Any]:
    bad = sorted(set(fields) - set(allowed))
    if bad:
        raise LimitsError(f"{where}: cannot override {bad}; allowed: {', '.join(allowed)}")
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            out[name] = None
            continue
        try:
            number = Decimal(str(value))
        except ArithmeticError:
            raise LimitsError(f"{where}.{name}: {value!r} is not a number") from None
        if not number.is_finite() or number < 0:
            raise LimitsError(f"{where}.{name}: {value!r} must be a finite number >= 0")
        out[name] = int(number) if name in ("max_open_orders", "max_orders_per_second") else number
    return out


def shadow_results(replayed: Replayed, limits: LimitOverrides) -> list[RuleResult]:
    """Evaluate the rules on the state a replayed decision saw, with candidate limits."""
    ctx = replayed.check
    signal = ctx.signal
    candidate = replace(
        ctx,
        account=limits.account_row(ctx.account),
        symbol_limit=limits.symbol_row(ctx.symbol_limit, signal.account, signal.symbol, signal.ts),
    )
    with localcontext(MONEY):
        return evaluate(candidate)


__all__ = [
    "ACCOUNT_LIMITS", "ANY", "SYMBOL_LIMITS", "Difference", "LimitOverrides", "LimitsError", "Logged",
    "RecordedLog", "Replayed", "compare", "replay_account", "replay_log", "shadow_results",
]
