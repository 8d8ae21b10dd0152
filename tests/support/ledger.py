"""Counts of what the reliability tests did, for docs/RELIABILITY.md.

Tests add to :data:`LEDGER` (faults injected, kill points tried, hostile inputs
generated, items lost); ``tests/conftest.py`` writes it to
``test-artifacts/reliability.json`` when the session ends, so the figures in the
document come from a real run of the suite, not from memory.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

LEDGER: Counter[str] = Counter()


def add(name: str, amount: int = 1) -> None:
    LEDGER[name] += amount


def write(path: Path) -> None:
    if not LEDGER:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(LEDGER.items())), indent=2) + "\n")
