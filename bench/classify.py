"""Worst classification time per MB of hostile text: ``python -m bench.classify``.

Feeds the step classifier and the log classifier the repeated pieces that make
backtracking patterns blow up (the same pieces as
``tests/model/test_linear_classification.py``) at growing sizes and prints the
worst CPU time per MB seen. Linear code keeps the per-MB figure flat as sizes
grow; a quadratic pattern shows up as a figure that grows with the size.
"""

from __future__ import annotations

import argparse
import time

from job.model.taxonomy import classify, last_error
from tests.model.test_linear_classification import PIECES


def worst_per_mb(size: int) -> tuple[float, str]:
    worst, culprit = 0.0, ""
    for piece in PIECES:
        text = (piece * (size // len(piece) + 1))[:size]
        for name, call in (
            ("classify", lambda t=text: classify("ValueError", t, t)),
            ("last_error", lambda t=text: last_error(t)),
        ):
            started = time.process_time()
            call()
            per_mb = (time.process_time() - started) / (size / 1e6)
            if per_mb > worst:
                worst, culprit = per_mb, f"{name} on {piece!r}"
    return worst, culprit


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.classify", description=__doc__)
    parser.add_argument("--sizes", default="16000,64000,256000", help="characters per input")
    args = parser.parse_args()
    print(f"{'size':>9}  {'worst CPU s per MB':>18}  where")
    for size in (int(s) for s in args.sizes.split(",")):
        worst, culprit = worst_per_mb(size)
        print(f"{size:>9,}  {worst:>18.3f}  {culprit}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
