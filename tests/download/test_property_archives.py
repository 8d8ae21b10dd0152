"""Property-based: archives built from random names, types and link targets.

Whatever hypothesis builds, extraction either succeeds with everything inside the
archive's folder or fails with one ItemError; it never writes outside, never leaves
a link pointing outside, never raises anything else, never leaves a partial folder.
"""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.core.atomic import remove_tree, temp_sibling
from job.core.errors import ItemError
from job.download.extract import Limits, extract_stream
from job.download.receive import open_decompressed
from tests.support import ledger

SEGMENTS = st.sampled_from(["a", "b", "..", ".", "", "run", "logs", "x.txt", "/", "c:"])
NAMES = st.lists(SEGMENTS, min_size=1, max_size=5).map("/".join)
KINDS = st.sampled_from(
    [
        tarfile.REGTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.FIFOTYPE,
        tarfile.BLKTYPE,
        b"V",
        tarfile.CONTTYPE,
    ]
)
TARGETS = st.one_of(NAMES, st.sampled_from(["/etc/passwd", "/tmp", "..", "../..", "", "."]))
MEMBERS = st.lists(
    st.tuples(NAMES, KINDS, TARGETS, st.binary(max_size=64)), min_size=1, max_size=12
)

STATS = {"archives": 0, "rejected": 0, "extracted": 0}


def build(members: list[tuple[str, bytes, str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz", format=tarfile.GNU_FORMAT) as tar:
        for name, kind, target, data in members:
            info = tarfile.TarInfo(name or ".")
            info.type = kind
            info.mode = 0o4777 if kind == tarfile.REGTYPE else 0o755
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = target
            if kind in (tarfile.REGTYPE, tarfile.CONTTYPE):
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
            else:
                tar.addfile(info)
    return buf.getvalue()


def outside(base: Path) -> set[str]:
    """Everything below ``base`` except the output folder's contents."""
    return {
        rel
        for p in base.rglob("*")
        if not (rel := p.relative_to(base).as_posix()).startswith("out/")
    }


@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "300")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(members=MEMBERS)
def test_random_archives_never_escape(members, tmp_path_factory):
    base = tmp_path_factory.mktemp("prop")
    (base / "sibling").mkdir()
    (base / "sibling" / "precious").write_bytes(b"keep")
    out = base / "out"
    out.mkdir()
    target = out / "G"
    tmp = temp_sibling(target)
    tmp.mkdir()
    before = outside(base)
    STATS["archives"] += 1
    ledger.add("hostile_archives_generated")
    try:
        extract_stream(open_decompressed(io.BytesIO(build(members))), tmp, Limits(10_000, 50))
    except ItemError as exc:
        STATS["rejected"] += 1
        ledger.add("generated_archives_rejected")
        reason = exc.reason
        remove_tree(tmp)  # what the fetcher does on failure
        assert reason
        assert "\n" not in reason
    else:
        STATS["extracted"] += 1
        os.rename(tmp, target)
    # nothing outside the output folder changed
    assert outside(base) == before
    assert (base / "sibling" / "precious").read_bytes() == b"keep"
    real_out = os.path.realpath(out)
    for dirpath, dirnames, filenames in os.walk(out):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st_mode = path.lstat().st_mode
            assert not (st_mode & 0o6000), f"setuid/setgid kept on {path}"
            if path.is_symlink():
                real = os.path.realpath(path)
                assert real == real_out or real.startswith(real_out + os.sep), path
            else:
                assert path.is_file() or path.is_dir(), f"special file {path}"
    assert [p for p in out.iterdir() if p.name.startswith(".")] == []
