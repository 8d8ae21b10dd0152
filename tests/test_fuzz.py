"""Fuzzing the parts that read what the bucket holds: tar extraction, the journal
decoder and model, the failure classifiers.

Why: every byte of an archive is chosen by whoever can upload to the bucket. Each
of these must, for any input, either succeed or fail that one item with
:class:`ItemError` (a one-line reason); any other exception, a write outside the
destination or a hang would take the night down. The suite runs a small number of
examples (seconds); ``scripts/fuzz`` (FUZZ_EXAMPLES=100000) runs the same properties
for as long as one cares to wait.
"""

from __future__ import annotations

import io
import os
import tarfile
from collections.abc import Callable

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.core.errors import ItemError
from job.download.extract import Limits, TarSource, extract_stream
from job.model.exc_message import traceback_message
from job.model.journal import build_journal
from job.model.jsondecode import decode_json
from job.model.taxonomy import classify, last_error
from tests.demo.test_synthetic import NODE_KEYS as AIDE_NODE_KEYS

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "100"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMITS = Limits(max_bytes=1 << 24, max_members=200)

NAMES = st.sampled_from(
    ["a", "b/c", "../x", "/abs", "d/../../y", "e\u202e", "f\x00g", "h/", ".", "", "i" * 300]
) | st.text(min_size=1, max_size=20)
KINDS = st.sampled_from(
    [tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.FIFOTYPE]
)
MEMBERS = st.lists(st.tuples(NAMES, KINDS, NAMES, st.binary(max_size=600)), min_size=1, max_size=6)


def _tar(members: list[tuple[str, bytes, str, bytes]], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, kind, target, data in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = target
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            try:
                tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
            except (ValueError, UnicodeError):
                continue  # a name this tar format cannot hold
    return buf.getvalue()


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    raw = bytearray(data)
    for at, value in flips:
        if raw:
            raw[at % len(raw)] = value
    return bytes(raw[:cut] if cut is not None else raw)


@FUZZ
@given(
    members=MEMBERS,
    fmt=st.sampled_from([tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT]),
    flips=st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 255)), max_size=6),
    cut=st.none() | st.integers(0, 1 << 14),
    buffer=st.sampled_from([1, 511, 512, 4096, 1 << 20]),
)
def test_extraction_of_any_tar_stream_fails_cleanly_or_stays_inside(
    tmp_path_factory: pytest.TempPathFactory,
    members: list[tuple[str, bytes, str, bytes]],
    fmt: int,
    flips: list[tuple[int, int]],
    cut: int | None,
    buffer: int,
) -> None:
    base = tmp_path_factory.mktemp("fuzz")
    dest = base / "out"
    dest.mkdir()
    data = _mutate(_tar(members, fmt), flips, cut)
    reason = _fails_with(
        lambda: extract_stream(TarSource(io.BytesIO(data), size=buffer), dest, LIMITS)
    )
    assert reason is None or "\n" not in reason
    assert sorted(p.name for p in base.iterdir()) == ["out"]  # nothing written beside it
    for path in dest.rglob("*"):
        assert not path.is_fifo()
        assert not path.is_block_device()
        assert not path.is_char_device()
        if path.is_symlink():  # a link that stays: it must point inside
            assert path.resolve().is_relative_to(dest.resolve())


def _fails_with(call: Callable[[], object]) -> str | None:
    """None when ``call`` succeeds, the reason when it fails the item; anything else raises."""
    try:
        call()
    except ItemError as exc:
        return exc.reason
    return None


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
NODE_KEYS = st.sampled_from(AIDE_NODE_KEYS)  # the keys AIDE 0.2.2 serialises
NODES = st.lists(st.dictionaries(NODE_KEYS, JSON, max_size=15), max_size=6)
DOCS = st.one_of(
    JSON,
    st.fixed_dictionaries({"nodes": NODES}, optional={"node2parent": JSON, "__version": JSON}),
)


def _decode_and_build(data: bytes) -> None:
    reason = _fails_with(lambda: build_journal(decode_json(data)))
    assert reason is None or reason


@FUZZ
@given(doc=DOCS)
def test_any_json_document_is_a_journal_or_a_one_line_failure(doc: object) -> None:
    _decode_and_build(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))


@FUZZ
@given(data=st.binary(max_size=400), doc=DOCS, flips=st.lists(st.integers(0, 4096), max_size=4))
def test_any_bytes_are_a_journal_or_a_one_line_failure(
    data: bytes, doc: object, flips: list[int]
) -> None:
    _decode_and_build(data)
    raw = bytearray(orjson.dumps(doc, option=orjson.OPT_NON_STR_KEYS))
    for at in flips:
        raw[at % len(raw)] ^= 0x80  # invalid UTF-8, broken structure
    _decode_and_build(bytes(raw))


TEXT = st.text(max_size=2000) | st.lists(
    st.sampled_from(
        [
            "Traceback (most recent call last):\n",
            "ERROR ",
            "KeyError: ",
            "'",
            '"',
            "[",
            "]",
            " not in index",
            "No such file or directory: ",
            "expected ",
            " but got ",
            "\n",
            " ",
            "a.",
            "Error",
            "\r",
            "\x1b[31m",
            "\u202e",
        ]
    ),
    max_size=200,
).map("".join)


@FUZZ
@given(exc_type=st.text(max_size=40), message=TEXT, output=TEXT)
def test_classifiers_never_raise(exc_type: str, message: str, output: str) -> None:
    classify(exc_type, message, output)
    last_error(output)
    traceback_message(exc_type, output)
