"""``tradeflow positions``: fills CSV in, positions CSV out, bad rows named by line."""

from __future__ import annotations

import io
import tempfile
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from operators.accounting import Position
from schemas.base import Side
from tradeflow.positions_cmd import FillsFileError, run

HEADER = "account,symbol,net_qty,avg_px,realized_pnl"


def positions(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "fills.csv"
    path.write_text(text)
    out = io.StringIO()
    run(path, out)
    return out.getvalue().splitlines()


def test_positions_replays_fills_sorted_by_account_and_symbol(tmp_path: Path) -> None:
    lines = positions(tmp_path, (
        "ts,account,symbol,side,qty,price,fee\n"
        "2024-03-01T09:30:00Z,B,MSFT,BUY,5,300,1\n"
        "2024-03-01T09:30:01Z,A,AAPL,BUY,10,100,0.5\n"
        "2024-03-01T09:30:02Z,A,AAPL,BUY,30,104,0.5\n"
        "2024-03-01T09:30:03Z,A,AAPL,SELL,20,110,\n"
        "2024-03-01T09:30:04Z,A,ABC,sell,2,10\n"
    ))
    assert lines == [
        HEADER,
        "A,AAPL,20,103,140",
        "A,ABC,-2,10,0",
        "B,MSFT,5,300,0",
    ]


def test_positions_without_header_and_fee_column(tmp_path: Path) -> None:
    lines = positions(tmp_path, "2024-03-01T09:30:00+00:00,A,X,BUY,1.5,10\n\n")
    assert lines == [HEADER, "A,X,1.5,10,0"]


@pytest.mark.parametrize(
    ("first", "second", "position"),
    [
        pytest.param("2024-03-01T09:30:00Z,A,X,BUY,10,100", "2024-03-01T09:30:01Z,A,X,SELL,15,90",
                     "A,X,-5,90,-100", id="flip_opens_remainder_at_fill_price"),
        pytest.param("2024-03-01T09:30:00Z,A,X,BUY,3,10", "2024-03-01T09:30:01Z,A,X,SELL,3,12.5",
                     "A,X,0,0,7.5", id="closed_position_is_listed_flat_with_its_pnl"),
        pytest.param("2024-03-01T09:30:05Z,A,X,SELL,1,20", "2024-03-01T09:30:00Z,A,X,BUY,1,10",
                     "A,X,0,0,10", id="replays_in_time_order_not_file_order"),
        pytest.param("2024-03-01T10:30:00+01:00,A,X,SELL,1,20", "2024-03-01 09:29:59,A,X,BUY,1,10",
                     "A,X,0,0,10", id="time_without_zone_is_utc"),
        pytest.param("2024-03-01T09:30:00Z,A,X,BUY,1,1", "2024-03-01T09:30:01Z,A,X,BUY,2,2",
                     "A,X,3,1.66666667,0", id="average_rounded_half_even_to_eight_places"),
    ],
)
def test_positions_of_two_fills(tmp_path: Path, first: str, second: str, position: str) -> None:
    lines = positions(tmp_path, f"{first}\n{second}\n")
    assert lines == [HEADER, position]


def test_positions_empty_file_writes_only_header(tmp_path: Path) -> None:
    assert positions(tmp_path, "") == [HEADER]


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        ("2024-03-01T09:30:00Z,A,X,HOLD,1,10", "side must be BUY or SELL"),
        ("2024-03-01T09:30:00Z,A,X,BUY,0,10", "qty must be greater than zero"),
        ("2024-03-01T09:30:00Z,A,X,BUY,-1,10", "qty must be greater than zero"),
        ("2024-03-01T09:30:00Z,A,X,BUY,1,abc", "price is not a number"),
        ("2024-03-01T09:30:00Z,A,X,BUY,1,NaN", "price must be a finite number"),
        ("2024-03-01T09:30:00Z,A,X,BUY,1,10,inf", "fee must be a finite number"),
        ("yesterday,A,X,BUY,1,10", "ts is not an ISO 8601 time"),
        ("2024-03-01T09:30:00Z, ,X,BUY,1,10", "account is empty"),
        ("2024-03-01T09:30:00Z,A,X,BUY,1", "expected 6 or 7 columns"),
    ],
)
def test_positions_bad_row_names_its_line_and_reason(
    tmp_path: Path, row: str, reason: str
) -> None:
    text = "ts,account,symbol,side,qty,price,fee\n2024-03-01T09:29:00Z,A,X,BUY,1,10\n\n" + row
    with pytest.raises(FillsFileError, match=rf"fills\.csv, line 4: {reason}"):
        positions(tmp_path, text + "\n")


def test_positions_bad_header_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FillsFileError, match="line 1: header must be"):
        positions(tmp_path, "ts,symbol,account,side,qty,price\n")


def test_positions_missing_file_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        run(tmp_path / "nope.csv", io.StringIO())


fill_rows = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]), st.sampled_from(["X", "Y"]),
        st.sampled_from([Side.BUY, Side.SELL]),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(100), places=2),
        st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1000), places=2),
    ),
    max_size=30,
)


@given(fill_rows)
def test_positions_output_matches_accounting_replay(rows: list) -> None:
    expected: dict[tuple[str, str], Position] = {}
    text = ""
    for i, (account, symbol, side, qty, px) in enumerate(rows):
        text += f"2024-03-01T09:30:{i:02d}Z,{account},{symbol},{side.value},{qty},{px}\n"
        expected.setdefault((account, symbol), Position(symbol)).apply_fill(side, qty, px)
    with tempfile.TemporaryDirectory() as tmp:
        lines = positions(Path(tmp), text)
    got = {tuple(line.split(",")[:2]): line.split(",")[2:] for line in lines[1:]}
    assert set(got) == set(expected)
    for key, pos in expected.items():
        net, avg, pnl = got[key]
        assert Decimal(net) == pos.net_qty
        assert abs(Decimal(avg) - pos.avg_px) <= Decimal("0.000000005")
        assert abs(Decimal(pnl) - pos.realized_pnl) <= Decimal("0.000000005")
