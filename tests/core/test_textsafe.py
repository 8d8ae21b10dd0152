"""Invisible characters are shown; spreadsheet cells never become formulas."""

from __future__ import annotations

import csv
import io

import pytest

from job.core.textsafe import csv_cell, csv_row, show_invisible

RLO = "\u202e"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (f"evil{RLO}txt.exe", "evil\\u202etxt.exe"),
        ("zero\u200bwidth", "zero\\u200bwidth"),
        ("\ufeffbom", "\\ufeffbom"),
        ("bell\x07 and esc\x1b", "bell\\x07 and esc\\x1b"),
        ("c1\x85", "c1\\x85"),
        ("tabs\tand\nlines stay", "tabs\tand\nlines stay"),
        ("plain ünïcödé 漢字", "plain ünïcödé 漢字"),
    ],
)
def test_show_invisible(text: str, shown: str) -> None:
    assert show_invisible(text) == shown


@pytest.mark.parametrize(
    ("value", "cell"),
    [
        ('=HYPERLINK("http://x","click")', '\'=HYPERLINK("http://x","click")'),
        ("+cmd|' /C calc'!A0", "'+cmd|' /C calc'!A0"),
        ("-2+3+cmd|' /C calc'!A0", "'-2+3+cmd|' /C calc'!A0"),
        ("@SUM(1+1)", "'@SUM(1+1)"),
        ("\t=1", "'\t=1"),
        ("-0.5", "-0.5"),  # a number stays a number
        ("KeyError: 'x'", "KeyError: 'x'"),
        (f"{RLO}=1", "\\u202e=1"),
        (-3, -3),
        (None, None),
    ],
)
def test_csv_cell(value: object, cell: object) -> None:
    assert csv_cell(value) == cell


def test_a_spreadsheet_reads_every_hostile_cell_as_text() -> None:
    buf = io.StringIO()
    csv.writer(buf).writerow(csv_row(["=1+1", "+1+A1", "@x", "-x", "ok", 2.5]))
    (row,) = csv.reader(io.StringIO(buf.getvalue()))
    assert [c[:1] for c in row[:4]] == ["'"] * 4
    assert row[4:] == ["ok", "2.5"]
