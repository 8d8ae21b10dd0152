"""The per-member extraction policy, exercised exhaustively as a pure function."""

from __future__ import annotations

import tarfile

import pytest

from job.download.safety import Seen, judge, normalise


def member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    return info


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a/b.txt", "a/b.txt"),
        ("./a/b.txt", "a/b.txt"),
        ("a//b/./c", "a/b/c"),
        ("a/../b", "b"),
        (".", ""),
        ("./", ""),
        ("../x", None),
        ("a/../../x", None),
        ("..", None),
        ("/etc/passwd", None),
        ("C:/x", None),
    ],
)
def test_normalise(name: str, expected: str | None) -> None:
    assert normalise(name) == expected


@pytest.mark.parametrize(
    ("info", "fragment"),
    [
        (member("/tmp/x"), "absolute path"),
        (member("../evil"), "climbs out"),
        (member("ok/../../evil"), "climbs out"),
        (member("dev", tarfile.CHRTYPE), "device node"),
        (member("blk", tarfile.BLKTYPE), "device node"),
        (member("pipe", tarfile.FIFOTYPE), "fifo"),
        (member("cont", tarfile.CONTTYPE), None),  # contiguous files are regular files
        (member("link", tarfile.SYMTYPE, "/tmp"), "absolute path"),
        (member("link", tarfile.SYMTYPE, "../../etc"), "outside the archive folder"),
        (member("a/link", tarfile.SYMTYPE, "../.."), "outside the archive folder"),
        (member("a/link", tarfile.SYMTYPE, ".."), "contains it"),
        (member("link", tarfile.SYMTYPE, "."), "contains it"),
        (member("link", tarfile.SYMTYPE, ""), "empty target"),
        (member("a/link", tarfile.SYMTYPE, "../b/file"), None),
        (member("hard", tarfile.LNKTYPE, "/etc/passwd"), "absolute path"),
        (member("hard", tarfile.LNKTYPE, "../outside"), "outside the archive folder"),
        (member("hard", tarfile.LNKTYPE, "never/written"), "does not point at a file"),
        (member("x", b"V"), "unsupported type"),
        (member(".", tarfile.REGTYPE), "archive folder itself"),
        (member("fine/file.txt"), None),
        (member("self", tarfile.LNKTYPE, "self"), "points at itself"),
    ],
)
def test_judge_rejects_each_hostile_kind(info: tarfile.TarInfo, fragment: str | None) -> None:
    verdict = judge(info, Seen())
    if fragment is None:
        assert verdict.ok, verdict.problem
    else:
        assert not verdict.ok
        assert fragment in (verdict.problem or "")


def test_writing_through_an_earlier_symlink_is_rejected() -> None:
    seen = Seen(symlinks={"a"})
    assert "through the symlink 'a'" in (judge(member("a/x"), seen).problem or "")
    assert "through the symlink 'a'" in (
        judge(member("a/b/c", tarfile.DIRTYPE), seen).problem or ""
    )
    assert "overwrite the symlink" in (judge(member("a"), seen).problem or "")
    assert judge(member("ab/x"), seen).ok  # a prefix of a name is not a parent folder


def test_hard_link_to_a_file_of_this_archive_is_allowed() -> None:
    seen = Seen(files={"dir/real.txt"})
    verdict = judge(member("copy", tarfile.LNKTYPE, "dir/real.txt"), seen)
    assert verdict.ok
    assert verdict.path == "copy"


def test_root_directory_member_is_harmless() -> None:
    verdict = judge(member("./", tarfile.DIRTYPE), Seen())
    assert verdict.ok
    assert verdict.path == ""
