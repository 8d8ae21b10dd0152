"""The streaming extractor against tarfile, at every buffer boundary and in every tar dialect.

job.download.extract parses headers with tarfile but copies member data itself through
one reusable buffer, so what can go wrong is bookkeeping: a header or a member
straddling a buffer refill, padding, PAX/GNU extended headers that consume
extra blocks, sparse maps. Each test compares the result with what the
standard library (or GNU tar) put in, or checks the one-line error.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from job.core.errors import ItemError
from job.download.extract import MAX_HEADER_BYTES, Limits, TarSource, extract_stream

LIMITS = Limits(max_bytes=1 << 34, max_members=10_000)
FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def make_tar(files: dict[str, bytes], fmt: int) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def extract(data: bytes, dest: Path, buffer: int = 1 << 20) -> None:
    dest.mkdir()
    source = TarSource(io.BytesIO(data), size=buffer)
    extract_stream(source, dest, LIMITS)
    source.drain()


FILE_NAMES = st.text(alphabet="abcdefghé_-", min_size=1, max_size=12)
LONG_NAMES = st.lists(FILE_NAMES, min_size=1, max_size=14).map("/".join)
FILES = st.dictionaries(LONG_NAMES, st.binary(max_size=3000), min_size=1, max_size=8)


@settings(
    max_examples=int(os.environ.get("HYPOTHESIS_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    files=FILES,
    fmt=st.sampled_from(["gnu", "pax"]),
    buffer=st.one_of(st.integers(1, 1100), st.sampled_from([511, 512, 513, 1024, 1 << 20])),
)
def test_any_buffer_size_gives_exactly_the_archived_files(
    tmp_path_factory: pytest.TempPathFactory, files: dict[str, bytes], fmt: str, buffer: int
) -> None:
    # Names that are prefixes of other names would be both a file and a folder.
    names = sorted(files)
    if any(b.startswith(a + "/") for a in names for b in names):
        return
    dest = tmp_path_factory.mktemp("x") / "out"
    extract(make_tar(files, FORMATS[fmt]), dest, buffer)
    assert tree(dest) == files


@pytest.mark.parametrize("fmt", ["ustar", "gnu", "pax"])
def test_every_dialect_matches_tarfile(tmp_path: Path, fmt: str) -> None:
    files = {
        "rg/a.txt": b"hello",
        "rg/empty": b"",
        "rg/exact-block": b"x" * 512,
        "rg/two-blocks-and-one": b"y" * 1025,
        "rg/big.bin": os.urandom(3 << 20),  # larger than the 1 MiB buffer
    }
    if fmt != "ustar":  # names only GNU long-name and PAX records can carry
        files["rg/" + "long-folder-name/" * 12 + "file.txt"] = b"deep"
        files["rg/naïve-ünïcode.txt"] = "ß".encode()
    data = make_tar(files, FORMATS[fmt])
    extract(data, tmp_path / "ours")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp_path / "theirs", filter="data")
    assert tree(tmp_path / "ours") == tree(tmp_path / "theirs") == files


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs GNU tar to write sparse archives")
@pytest.mark.parametrize(
    "flags",
    [
        ["--format=gnu"],
        ["--format=posix", "--sparse-version=0.0"],
        ["--format=posix", "--sparse-version=0.1"],
        ["--format=posix", "--sparse-version=1.0"],
    ],
    ids=["gnu", "pax-0.0", "pax-0.1", "pax-1.0"],
)
def test_sparse_members_keep_their_data_and_holes(tmp_path: Path, flags: list[str]) -> None:
    src = tmp_path / "src"
    src.mkdir()
    sparse = src / "sparse.bin"
    chunks = {0: b"A" * 5000, 1 << 20: b"B" * 7000, 3 << 20: b"C" * 100}
    with open(sparse, "wb") as f:
        for offset, data in chunks.items():
            f.seek(offset)
            f.write(data)
        f.truncate(4 << 20)  # a trailing hole too
    (src / "after.txt").write_bytes(b"the member after the sparse one")
    archive = tmp_path / "a.tar"
    subprocess.run(
        ["tar", "--sparse", *flags, "-cf", str(archive), "-C", str(src), "sparse.bin", "after.txt"],
        check=True,
    )
    with tarfile.open(archive) as tar:
        assert tar.getmember("sparse.bin").sparse, "tar did not write a sparse member"
    extract(archive.read_bytes(), tmp_path / "out")
    assert (tmp_path / "out" / "sparse.bin").read_bytes() == sparse.read_bytes()
    assert (tmp_path / "out" / "after.txt").read_bytes() == b"the member after the sparse one"


def test_forged_extended_header_size_is_refused_without_allocating_it(tmp_path: Path) -> None:
    pax = tarfile.TarInfo("././@PaxHeader")
    pax.type = tarfile.XHDTYPE
    pax.size = 1 << 32  # 4 GiB of "PAX records" that are not there
    data = pax.tobuf(tarfile.USTAR_FORMAT) + b"\0" * 1024
    with pytest.raises(ItemError, match=r"extended header of \d+ bytes"):
        extract(data, tmp_path / "out")
    assert pax.size > MAX_HEADER_BYTES


def test_truncated_inside_member_data(tmp_path: Path) -> None:
    data = make_tar({"a.bin": b"z" * 5000}, tarfile.PAX_FORMAT)
    with pytest.raises(ItemError, match=r"truncated inside member .a\.bin."):
        extract(data[: 512 + 3000], tmp_path / "out", buffer=700)


def test_truncated_inside_padding(tmp_path: Path) -> None:
    data = make_tar({"a.bin": b"z" * 5000}, tarfile.USTAR_FORMAT)
    with pytest.raises(ItemError, match="truncated"):
        extract(data[: 512 + 5000 + 10], tmp_path / "out")


def test_archive_without_end_marker_is_accepted_as_tarfile_does(tmp_path: Path) -> None:
    files = {"a.txt": b"one", "b.txt": b"two"}
    data = make_tar(files, tarfile.USTAR_FORMAT)
    whole = 512 + 512 + 512 + 512  # two headers, two data blocks; no zero blocks
    extract(data[:whole], tmp_path / "out")
    assert tree(tmp_path / "out") == files


def test_garbage_after_the_end_marker_is_ignored(tmp_path: Path) -> None:
    files = {"a.txt": b"one"}
    extract(make_tar(files, tarfile.USTAR_FORMAT) + os.urandom(5000), tmp_path / "out")
    assert tree(tmp_path / "out") == files


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty file"), (b"not a tar header at all".ljust(512, b"!"), "not a valid tar")],
    ids=["empty", "garbage"],
)
def test_not_a_tar(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ItemError, match=message):
        extract(data, tmp_path / "out")


def test_data_of_skipped_types_is_skipped_not_extracted(tmp_path: Path) -> None:
    # A global PAX header carries data that belongs to no file.
    buf = io.BytesIO()
    with tarfile.open(
        fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers={"comment": "x" * 3000}
    ) as tar:
        info = tarfile.TarInfo("a.txt")
        info.size = 3
        tar.addfile(info, io.BytesIO(b"abc"))
    extract(buf.getvalue(), tmp_path / "out", buffer=600)
    assert tree(tmp_path / "out") == {"a.txt": b"abc"}
