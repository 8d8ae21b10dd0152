"""The helper scripts CI relies on behave as their usage says."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
ENSURE = REPO / "scripts" / "ensure-debian-package"


def test_ensure_debian_package_does_nothing_when_the_program_is_there() -> None:
    # The running Python is certainly installed: no apt-get, no root needed.
    result = subprocess.run(
        [str(ENSURE), "python3", sys.executable], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"python3: {sys.executable}\n"


def test_ensure_debian_package_wants_a_package_and_a_program() -> None:
    result = subprocess.run([str(ENSURE), "isal"], capture_output=True, text=True, check=False)
    assert result.returncode == 2
    assert result.stderr == "usage: ensure-debian-package PACKAGE PROGRAM\n"
    assert result.stdout == ""
