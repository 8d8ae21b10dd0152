"""The console is for people: what the terminal shows, what --help says, what the README lists.

The terminal test runs the real CLI on a real pseudo-terminal (``os.openpty``,
120 columns) against the loopback S3 server, records every byte the job wrote,
and replays them the way a terminal would (carriage returns, erase-line
sequences) to get the screen a person is left with after the run.
"""

from __future__ import annotations

import argparse
import errno
import fcntl
import os
import re
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest

from job.cli import build_parser
from tests.conftest import run_group_members, tar_gz

README = Path(__file__).resolve().parent.parent / "README.md"
COLUMNS = 120
_CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")
_BAR = re.compile(r"\[[#-]{10,}\]")
_EVENT = re.compile(r"\b(download|parse|report)\.[a-z_]+\b")
#: The events a person sees by the dozen; each must fit one row.
COMMON = (
    "download.listed",
    "download.archive",
    "download.summary",
    "parse.journal",
    "parse.summary",
)


def final_screen(output: str) -> list[str]:
    """The rows a terminal shows after ``output``: ``\\r``, ``\\n``, erase-line (``ESC[K``,
    ``ESC[2K``) applied, colours dropped. Rows are not wrapped, so a row longer than
    the terminal's width shows up as such (a real terminal would fold it onto more rows).
    """
    rows: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(output):
        char = output[i]
        if char == "\x1b":
            match = _CSI.match(output, i)
            if match:
                params, command = match.groups()
                if command == "K":
                    mode = params or "0"
                    if mode == "2":
                        rows[row] = [" "] * col
                    elif mode == "0":
                        del rows[row][col:]
                    elif mode == "1":
                        rows[row][: col + 1] = [" "] * min(col + 1, len(rows[row]))
                i = match.end()
                continue
        if char == "\r":
            col = 0
        elif char == "\n":
            row += 1
            col = 0
            if row == len(rows):
                rows.append([])
        else:
            line = rows[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
        i += 1
    return ["".join(r).rstrip() for r in rows]


def test_final_screen_applies_carriage_returns_and_erase_line() -> None:
    assert final_screen("abc\rX\n") == ["Xbc", ""]
    assert final_screen("[###] 1/2\r\x1b[2Kline\n") == ["line", ""]
    assert final_screen("abcdef\r\x1b[1;32mab\x1b[0m\x1b[K\n") == ["ab", ""]


def _run_on_a_terminal(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` with stdin, stdout and stderr on one pseudo-terminal; (status, bytes shown)."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, COLUMNS, 0, 0))
    proc = subprocess.Popen(
        argv, stdin=slave, stdout=slave, stderr=slave, env=os.environ.copy(), close_fds=True
    )
    os.close(slave)
    chunks: list[bytes] = []
    try:
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError as exc:  # EIO: every writer of the terminal has gone
                if exc.errno != errno.EIO:
                    raise
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(master)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_console_run_leaves_one_clean_row_per_event(
    s3, bucket: str, tmp_path: Path, s3_env: dict[str, str]
) -> None:
    for i in range(12):
        agent = ("aide", "biomni", "stella")[i % 3]
        key = (
            f"failed_runs/{agent}/proteingym-dms/A0A140D2T1_ZIKV_Sourisseau_2019_{i}/"
            f"2025-08-25T20-49-{i:02d}-GMT_run-group_{agent}.tar.gz"
        )
        s3.put_object(Bucket=bucket, Key=key, Body=tar_gz(run_group_members(f"G{i}")))
    status, shown = _run_on_a_terminal(
        [
            sys.executable, "-m", "job", "run", "--log-format", "console",
            "--bucket-path", f"s3://{bucket}/failed_runs/",
            "--output-dir", str(tmp_path / "root"),
        ]
    )  # fmt: skip
    assert status == 0, shown
    assert "archives" in shown, "no progress bar was drawn: the test would prove nothing"
    screen = [row for row in final_screen(shown) if row.strip()]
    mixed = [row for row in screen if _BAR.search(row) and _EVENT.search(row)]
    assert not mixed, "\n".join(mixed)
    rows = {name: [r for r in screen if f" {name} " in f"{r} "] for name in COMMON}
    assert len(rows["download.archive"]) == 12, "\n".join(screen)
    assert len(rows["parse.journal"]) == 24, "\n".join(screen)
    for name in COMMON:
        assert rows[name], f"no {name} row:\n" + "\n".join(screen)
        for row in rows[name]:
            assert len(row) <= COLUMNS, f"{len(row)} columns: {row}"
    archive_row = rows["download.archive"][0]
    assert archive_row.count("run-group_") == 1  # the path once, not as key= and folder=
    assert re.search(r" \d+(\.\d)? [kMG]?B->\d+(\.\d)? [kMG]?B ", archive_row), (
        archive_row
    )  # human-readable sizes
    assert re.search(r" \d+\.\d\ds$", archive_row), archive_row  # a short duration, last


# --- --help and the README -------------------------------------------------------------


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _help_entries(text: str) -> dict[str, str]:
    """``--flag`` -> its help text, from the "options:" section of a --help page."""
    entries: dict[str, str] = {}
    current = None
    for line in text.split("options:", 1)[1].splitlines():
        match = re.match(r"^  (-[^\s,]+(?:, -[^\s,]+)*)(?: \S+)?(?:\s{2,}(.*))?$", line)
        if match and line.startswith("  -"):
            current = match.group(1).split(", ")[-1]
            entries[current] = (match.group(2) or "").strip()
        elif current and line.startswith(" " * 20):
            entries[current] = f"{entries[current]} {line.strip()}".strip()
    return entries


@pytest.mark.parametrize("command", ["download", "parse", "run", "merge", "report"])
def test_help_gives_every_flag_a_line_of_help_and_its_default(command: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "job", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "100"},
        check=True,
    )
    entries = _help_entries(result.stdout)
    actions = [a for a in _subparsers()[command]._actions if a.option_strings]
    assert {a.option_strings[-1] for a in actions} == set(entries)
    for action in actions:
        flag = action.option_strings[-1]
        text = entries[flag]
        assert text, f"{command} {flag} has no help"
        takes_value = action.nargs != 0
        if takes_value:
            assert "default" in text, f"{command} {flag}: no default in {text!r}"
        if takes_value and action.default not in (None, argparse.SUPPRESS):
            shown = str(action.default)
            assert shown in text or flag == "--max-bytes", f"{command} {flag}: {text!r}"


def test_readme_flags_table_lists_every_flag() -> None:
    section = README.read_text().split("### Flags", 1)[1].split("\n### ", 1)[0]
    documented = set(re.findall(r"^\| `(--[a-z-]+)", section, flags=re.M))
    documented |= set(re.findall(r"^\| `--[a-z-]+[^|]*? (--[a-z-]+)", section, flags=re.M))
    flags = {
        option
        for parser in _subparsers().values()
        for action in parser._actions
        for option in action.option_strings
        if option.startswith("--") and option != "--help"
    }
    assert flags - documented == set(), "missing from the README's flags table"
    assert documented - flags == set(), "in the README's flags table but not in the CLI"


def test_a_failed_archive_keeps_its_whole_path_and_its_error() -> None:
    import io

    from job.core.console import ConsoleLines

    folder = (
        "aide/proteingym-dms/A0A140D2T1_ZIKV_Sourisseau_2019/2025-08-25T20-49-28-GMT_run-group_aide"
    )
    line = ConsoleLines(io.StringIO(), colors=False)(
        None,
        "error",
        {
            "event": "download.archive",
            "level": "error",
            "timestamp": "2026-12-04T10:38:03.123Z",
            "stage": "download",
            "key": f"v1/artifacts/failed_runs/{folder}.tar.gz",
            "folder": folder,
            "outcome": "failed",
            "error": "corrupt gzip data",
            "bytes": 0,
            "attempts": 3,
            "seconds": 1.5,
        },
    )
    assert line.startswith("10:38:03 error download.archive ")
    assert f" {folder} FAILED " in line
    assert 'error="corrupt gzip data"' in line
    assert "attempts=3" in line
    assert "key=" not in line
    assert "stage=" not in line


def test_the_report_line_shows_tallies_compactly_and_leaves_out_zeros() -> None:
    import io

    from job.core.console import ConsoleLines

    line = ConsoleLines(io.StringIO(), colors=False)(
        None,
        "info",
        {
            "event": "report.site",
            "level": "info",
            "timestamp": "2026-12-04T10:38:03.123Z",
            "index_html": "/data/index.html",
            "failures_csv": "/data/failures.csv",
            "runs": 80,
            "warnings": 0,
            "pages_written": 0,
            "verdicts": {"succeeded": 10, "time_limit": 20, "unknown": 0},
        },
    )
    assert "verdicts=time_limit:20,succeeded:10 " in line + " "  # biggest first, no zeros
    assert "unknown" not in line
    assert "warnings=" not in line
    assert "pages_written=" not in line
    assert "failures.csv" not in line  # beside index.html, which is shown
    assert "index_html=/data/index.html" in line
    assert "runs=80" in line
