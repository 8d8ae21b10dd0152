"""Which bench contenders run where: a tool that is not installed is named, never a crash."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.contenders import CONTENDERS, DOWNLOADERS, runnable


def _path_with(tmp_path: Path, *programs: str) -> str:
    """A PATH of one folder holding an executable stub for each program."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in programs:
        stub = folder / name
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return str(folder)


def test_every_downloader_runs_when_its_tools_are_there(tmp_path: Path) -> None:
    chosen, left_out = runnable(
        list(DOWNLOADERS), explicit=False, path=_path_with(tmp_path, "igzip")
    )
    assert chosen == list(DOWNLOADERS)
    assert left_out == []


def test_a_default_contender_without_its_tool_is_left_out_with_how_to_get_it(
    tmp_path: Path,
) -> None:
    chosen, left_out = runnable(list(DOWNLOADERS), explicit=False, path=_path_with(tmp_path))
    assert chosen == [n for n in DOWNLOADERS if n != "pipe_igzip"]
    assert left_out == [
        "pipe_igzip left out: igzip is not installed (Debian/Ubuntu: apt-get install isal)"
    ]


def test_a_contender_asked_for_by_name_without_its_tool_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LookupError, match=r"^contender pipe_igzip cannot run: igzip is not"):
        runnable(["download", "pipe_igzip"], explicit=True, path=_path_with(tmp_path))


def test_a_stub_that_is_not_executable_does_not_count(tmp_path: Path) -> None:
    path = _path_with(tmp_path, "igzip")
    os.chmod(Path(path) / "igzip", 0o644)
    assert CONTENDERS["pipe_igzip"].missing(path) is not None
    assert CONTENDERS["pipeline"].missing(path) is None  # needs nothing beyond the venv
