"""Classifying hostile text takes linear time: no regular expression backtracks on it.

A 0.5 KB run.log once held the report stage for 18 minutes: a pattern retried a
greedy run at every position. Every compiled pattern in the modules that read
archive text is fed adversarial strings here (built from the pieces such patterns
repeat), and so are the classifiers' entry points, via hypothesis. The bound is
CPU time per call, generous for a loaded 2-core machine yet far below what
backtracking takes on these inputs (seconds to hours).
"""

from __future__ import annotations

import importlib
import pkgutil
import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.model.taxonomy import MAX_MESSAGE_CHARS, classify, last_error

#: Packages whose code reads text from archives (logs, journals, names).
READERS = ("job.model", "job.report", "job.parse", "job.download")
#: What hostile text repeats to make a pattern backtrack.
PIECES = [
    " ", "a", "a ", "'", '"', "x.", "Error: ", "\t", ":", "(", "1", "/", "\\", "-", ".", "_",
    "aa.", "a'", 'File "', "line 1", "in ", "\n", "Traceback", "0.5", "=", ",", "[", "]",
    "Killed", "CUDA out of memory", "No module named ", "key ", "shape (", "timed out after ",
    "+ timeout ", "[Container] ", "Error", "Exception", "() ", "None of [", "@", "://",
]  # fmt: skip
SIZE = 20_000  # characters per input: 64 KB log tails are cut before classification
LIMIT = 0.5  # CPU seconds per call


def compiled_patterns() -> list[tuple[str, re.Pattern]]:
    found = []
    for package in READERS:
        pkg = importlib.import_module(package)
        for info in pkgutil.iter_modules(pkg.__path__):
            module = importlib.import_module(f"{package}.{info.name}")
            for name, value in vars(module).items():
                if isinstance(value, re.Pattern):
                    found.append((f"{module.__name__}.{name}", value))
    return found


PATTERNS = compiled_patterns()


def test_the_patterns_are_found() -> None:
    names = {n for n, _ in PATTERNS}
    assert len(PATTERNS) > 20
    assert "job.model.taxonomy._DOES_NOT_EXIST" in names  # the enumeration reaches them


def cpu(call) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    call()
    return time.process_time() - started


@pytest.mark.parametrize(("name", "pattern"), PATTERNS, ids=[n for n, _ in PATTERNS])
def test_every_pattern_is_linear_on_repeated_pieces(name: str, pattern: re.Pattern) -> None:
    worst = 0.0
    for piece in PIECES:
        text = (piece * (SIZE // len(piece) + 1))[:SIZE]
        for candidate in (text, text + "!", "Error: " + text + "\n"):
            data = candidate.encode() if isinstance(pattern.pattern, bytes) else candidate
            worst = max(worst, cpu(lambda d=data: pattern.search(d)))
    assert worst < LIMIT, f"{name}: {worst:.2f} s on {SIZE} characters"


hostile = (
    st.lists(st.sampled_from(PIECES), min_size=1, max_size=40)
    .map("".join)
    .flatmap(
        lambda unit: st.integers(min_value=1, max_value=SIZE // max(1, len(unit))).map(
            lambda n: unit * n
        )
    )
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(message=hostile, output=hostile)
def test_step_classification_is_bounded(message: str, output: str) -> None:
    for exc_type in ("KeyError", "TypeError", "ValueError", "RuntimeError", None):
        spent = cpu(lambda t=exc_type: classify(t, message, output))
        assert spent < LIMIT, (exc_type, len(message), spent)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(log=hostile)
def test_log_classification_is_bounded(log: str) -> None:
    assert cpu(lambda: last_error(log)) < LIMIT


def test_messages_are_clipped_before_classification() -> None:
    long = "x" * (MAX_MESSAGE_CHARS * 4) + " No module named 'late'"
    assert classify("ModuleNotFoundError", long) is not None
    assert "late" not in str(classify("ModuleNotFoundError", long))
