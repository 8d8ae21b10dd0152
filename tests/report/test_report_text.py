"""The plain-text report of one journal (issue #3, point 4, and the text half of point 6)."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from job.core.atomic import iter_temporaries
from job.core.atomic_stream import atomic_binary_file
from job.core.errors import Cancelled
from job.model.journal import build_journal
from job.model.layout import derive_layout
from job.report.text import END_MARKER, block_text, clean_text, encode, render_report, write_report
from tests.journal_builders import failing, journal, node, run_path

LAYOUT = derive_layout(
    run_path("2025-09-01T10-00-00-GMT_run-group_aide", "polarishub", "perm-1", experiment="exp-7")
)


def render(doc: dict[str, Any], layout=LAYOUT) -> str:  # type: ignore[no-untyped-def]
    return render_report(build_journal(json.loads(json.dumps(doc))), layout)


def block_lines(text: str | None) -> list[str]:
    return block_text(text).split("\n")[:-1]


def dedent(lines: list[str]) -> str:
    assert all(line == "" or line.startswith("    ") for line in lines)
    return "\n".join(line[4:] for line in lines)


@pytest.fixture
def doc() -> dict[str, Any]:
    return journal(
        [
            failing(
                0, "KeyError", "'label'", plan="Read the table.", code="import pandas\n\ny = 1\n"
            ),
            node(1, value=0.5, maximize=False, plan="Fit a ridge model.", exec_time=2.5),
            node(2, value=0.25, maximize=False, plan="Tune alpha."),
        ],
        edges={1: 0, 2: 1},
    )


def test_header_names_the_run_and_counts(doc: dict[str, Any]) -> None:
    report = render(doc)
    for label, value in [
        ("Run group", "2025-09-01T10-00-00-GMT_run-group_aide"),
        ("Agent", "aide"),
        ("Domain", "polarishub"),
        ("Task", "perm-1"),
        ("Task id", "polarishub/perm-1"),
        ("Run folder", LAYOUT.run_folder),
        ("Run id", LAYOUT.run_id),
        ("Experiment", "exp-7"),
        ("Journal", LAYOUT.journal),
        ("Steps", "3"),
        ("Buggy steps", "1"),
        ("Best metric", "0.25 at step 2 (lower is better)"),
        ("Exceptions", "KeyError: 1"),
        ("Layout warnings", "none"),
    ]:
        assert f"\n{label:<18}{value}\n" in report, label


def test_best_metric_none_and_no_exceptions() -> None:
    report = render(journal([failing(0, "KeyError", "x") | {"exc_type": None}]))
    assert "\nBest metric       none (no step without a bug" in report
    assert "\nExceptions        none\n" in report


def test_each_step_in_order_with_all_its_parts(doc: dict[str, Any]) -> None:
    report = render(doc)
    starts = [report.index(f"\nStep {i}\n") for i in range(3)]
    assert starts == sorted(starts)
    step0 = report[starts[0] : starts[1]]
    for expected in [
        "Time (UTC)        2025-08-25T17:09:05.250Z",
        "Stage             draft\n",
        "Buggy             yes",
        "Execution time    0.500 s",
        "Metric            none",
        "Error             KeyError: 'label'",
        "\nPlan\n    Read the table.\n",
        "\nCode\n    import pandas\n\n    y = 1\n",  # the blank line stays empty
        "\nTerminal output\n    Traceback (most recent call last):\n",
        "    KeyError: 'label'\n",
        "\nAnalysis\n    an analysis\n",
        "Error details\n    Type              KeyError\n    Message           'label'",
        "Info              args: [\"'label'\"]",
        "Stack (most recent call last)\n        runfile.py:3 in <module>\n            boom()\n",
        f"Children          step 1 ({doc['nodes'][1]['id']})",
    ]:
        assert expected in step0, expected
    step1 = report[starts[1] : starts[2]]
    assert "Stage             debug (parent: step 0)" in step1
    assert "Metric            0.5 (lower is better)" in step1
    assert "Execution time    2.500 s" in step1
    assert "Error             none" in step1
    assert "Error details" not in step1
    assert "Stage             improve (parent: step 1)" in report[starts[2] :]
    assert report.endswith(f"{END_MARKER}\n")


def test_error_details_lay_out_every_field() -> None:
    """Several info keys align under the first; missing parts say "none" or "?"."""
    doc = journal(
        [
            failing(
                0,
                "ValueError",
                "bad\tvalue",
                exc_info={"args": ["bad"], "name": None, "note": "a\nb"},
                exc_stack=[
                    ["runfile.py", 3, "<module>", "  fit()  "],
                    ["/lib/x.py", None, None, None],
                ],
            ),
            failing(1, "KeyError", "", exc_info={}, exc_stack=[]),
        ]
    )
    report = render(doc)

    def details_of(step: int) -> str:
        """The report from this step's "Error details" on."""
        return report[report.index("Error details", report.index(f"\nStep {step}\n")) :]

    assert details_of(0).startswith(
        "Error details\n"
        "    Type              ValueError\n"
        "    Message           bad\tvalue\n"
        '    Info              args: ["bad"]\n'
        "                      name: null\n"
        "                      note: a\\nb\n"
        "    Stack (most recent call last)\n"
        "        runfile.py:3 in <module>\n"
        "            fit()\n"
        "        /lib/x.py:? in ?\n\n"
    )
    assert details_of(1).startswith(
        "Error details\n"
        "    Type              KeyError\n"
        "    Message           none\n"
        "    Info              none\n"
        "    Stack             none\n\n"
    )


def test_overview_lists_every_step(doc: dict[str, Any]) -> None:
    report = render(doc)
    overview = report[report.index("Steps at a glance") : report.index("\nStep 0\n")]
    rows = [line.split() for line in overview.splitlines()[3:] if line.strip("= ")]
    assert rows == [
        ["0", "draft", "-", "yes", "-", "KeyError"],
        ["1", "debug", "0", "no", "0.5", "-"],
        ["2", "improve", "1", "no", "0.25", "-"],
    ]


def test_empty_journal_says_so() -> None:
    report = render({"nodes": [], "node2parent": {}, "__version": "2"})
    assert "This journal has no steps" in report
    assert "\nSteps             0\n" in report
    assert "\nStep 0\n" not in report


def test_layout_and_journal_warnings_are_in_the_header() -> None:
    layout = derive_layout("odd/place/logs/e/journal.json")
    report = render(journal([node(0) | {"metric": {"value": 1.0, "maximize": None}}]), layout)
    for warning in layout.warnings:
        assert warning in report
    assert "Run group         unknown" in report
    assert "no best metric" in report  # the journal's own warning


def test_missing_and_empty_texts_are_marked() -> None:
    report = render(journal([node(0, plan=None, code="", analysis="  \n")]))
    assert "\nPlan\n    (not recorded)\n" in report
    assert "\nCode\n    (empty)\n" in report
    assert "\nAnalysis\n    (empty)\n" in report


def test_terminal_control_sequences_are_removed_or_shown() -> None:
    out = (
        "\x1b[31mred\x1b[0m text\r\nbar  10%\rbar 100%\n\x1b]0;title\x07bell\x07 nul\x00 tab\tok\n"
    )
    report = render(journal([node(0, term_out=[out])]))
    assert "\x1b" not in report
    assert "    red text\n    bar  10%\n    bar 100%\n    bell\\x07 nul\\x00 tab\tok\n" in report
    assert "\r" not in report


def test_bad_times_and_odd_numbers_do_not_break_the_report() -> None:
    report = render(journal([node(0, ctime=1e300, value=3.0, exec_time=None)]))
    assert "1e+300 (not a valid time)" in report
    assert "Metric            3 (higher is better)" in report
    assert "Execution time    unknown" in report


@pytest.mark.parametrize(
    "text",
    [
        "".join(f"line {i} " + "x" * (i % 90) + "\n" for i in range(5000)),  # ~250 KB, many chunks
        "y" * 200_000,  # one line longer than a chunk
        ("z" * 65_530 + "\x1b[1;31m" + "w" * 10 + "\n") * 3,  # escape sequence across a cut
        "a\r" * 40_000 + "\n",  # carriage returns around chunk boundaries
    ],
    ids=["many-lines", "one-long-line", "escape-at-cut", "carriage-returns"],
)
def test_long_blocks_survive_chunking_exactly(text: str) -> None:
    assert dedent(block_lines(text)) == clean_text(text).removesuffix("\n")


def test_cancelled_between_steps(doc: dict[str, Any]) -> None:
    calls = iter([False, True])
    with pytest.raises(Cancelled):
        write_report(io.BytesIO(), build_journal(doc), LAYOUT, should_stop=lambda: next(calls))


# -- writing the file ---------------------------------------------------------------


def test_file_is_utf8_with_replacement_characters_for_lone_surrogates(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    with atomic_binary_file(target) as out:
        out.write(encode("before \ud800 after \U0001f600\n"))
    assert target.read_bytes().decode("utf-8") == "before \ufffd after \U0001f600\n"


def test_a_failed_write_leaves_the_old_report_and_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "r.txt"
    target.write_text("old report\n")

    def write_half_then_fail() -> None:
        with atomic_binary_file(target) as out:
            out.write(b"half of a new report")
            raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_half_then_fail()
    assert target.read_text() == "old report\n"
    assert list(iter_temporaries(tmp_path)) == []


def test_nothing_is_visible_until_the_report_is_complete(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "r.txt"
    with atomic_binary_file(target) as out:
        out.write(b"partial")
        assert not target.exists()
        assert [p.name.startswith(".r.txt.partial-") for p in target.parent.iterdir()] == [True]
    assert target.read_text() == "partial"
    assert list(iter_temporaries(tmp_path)) == []


# -- the byte-level block writer against its definition ------------------------------

BLOCK_CHARS = st.sampled_from(
    [
        *("a", "b", " ", "\t", "\n", "\n", "\r", "\r\n", "\x1b[31m", "\x1b]0;t\x07", "\x00"),
        *("\x7f", "\x85", "\x9b", "é", "€", "😀", "\u2028", "\ud800", "    "),
    ]
)


def reference_block(text: str) -> str:
    """What a block is: clean_text, then every line with content indented by four spaces."""
    if not text.strip():
        return "    (empty)\n"
    cleaned = clean_text(text)
    if not cleaned:
        return ""
    lines = cleaned.removesuffix("\n").split("\n")
    return "".join(f"    {line}\n" if line else "\n" for line in lines).replace("\ud800", "\ufffd")


@settings(max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")), deadline=None)
@given(st.lists(BLOCK_CHARS, max_size=40).map("".join))
def test_block_is_clean_text_indented(text: str) -> None:
    assert block_text(text) == reference_block(text)


def test_long_block_is_cut_at_line_breaks_and_reads_the_same(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import job.report.text

    monkeypatch.setattr(job.report.text, "_CHUNK", 64)
    text = "".join(f"line {i}\x1b[0m\r\n\n" if i % 7 else f"{'x' * 150}\n" for i in range(200))
    assert block_text(text) == reference_block(text)


def test_overview_keeps_its_columns_for_long_metrics() -> None:
    """A metric as AIDE stores it (0.7179789213213216) must not push the error column."""
    nodes = [
        node(0, value=0.7179789213213216),
        failing(1, "KeyError", "'x'"),
        node(2, value=12345678.123456789),
    ]
    report = render(journal(nodes, {1: 0, 2: 0}))
    overview = report[report.index("Steps at a glance") : report.index("\nStep 0\n")]
    header, *rows = [line for line in overview.splitlines()[2:] if line.strip("= ")]
    column = header.index("error")
    assert [row[column:].split()[0] for row in rows] == ["-", "KeyError", "-"]
    assert [row[column - 1] for row in rows] == [" "] * 3  # nothing runs into the column
    assert "0.7179789213213216" in rows[0]
