"""The old way of reading journals: one process, ``json.load``, a text file per journal.

This stands in for the team's earlier ad-hoc script, as the baseline that
``analyze-failures parse`` is compared against: walk the extracted runs, load each
``journal.json`` whole with the standard library, and write every step's plan,
code, output and analysis to ``<out>/<run path>.txt``. Deliberately plain: no
threads, no streaming, no incremental skipping.

Usage: ``python -m bench.baseline_parse FAILED_RUNS_DIR OUTPUT_DIR``
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any


def format_journal(journal: dict[str, Any]) -> str:
    parents = journal.get("node2parent", {})
    out: list[str] = []
    for node in journal.get("nodes", []):
        metric = (node.get("metric") or {}).get("value")
        out.append(f"=== Step {node.get('step')} ({node.get('id')}) ===")
        out.append(f"Parent: {parents.get(node.get('id'), '-')}")
        out.append(f"Buggy: {node.get('is_buggy')}  Metric: {metric}")
        if node.get("exc_type"):
            out.append(f"Exception: {node['exc_type']}")
        out.append("--- Plan ---")
        out.append(node.get("plan") or "")
        out.append("--- Code ---")
        out.append(node.get("code") or "")
        out.append("--- Output ---")
        out.append("".join(node.get("_term_out") or []))
        out.append("--- Analysis ---")
        out.append(node.get("analysis") or "")
        out.append("")
    return "\n".join(out)


def parse_tree(src: Path, dest: Path) -> tuple[int, int]:
    """Format every journal under ``src``; return (journals, bytes read)."""
    count = size = 0
    for path in sorted(src.rglob("journal.json")):
        with open(path, encoding="utf-8") as f:
            journal = json.load(f)
        size += path.stat().st_size
        target = dest / path.relative_to(src).parent.with_suffix(".txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(format_journal(journal), encoding="utf-8")
        count += 1
    return count, size


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    start = time.perf_counter()
    count, size = parse_tree(Path(argv[0]), Path(argv[1]))
    seconds = time.perf_counter() - start
    print(json.dumps({"journals": count, "bytes": size, "seconds": seconds}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
