"""Build tar.gz archives in memory: biomlbench-shaped run groups and hostile inputs.

Why: the samples in ``tests/fixtures/samples`` are realistic but few and small. The job's
download/extract/parse path also has to be tested on shapes they do not cover (many
runs, other agents, odd journals) and, above all, on archives written by an attacker
or a broken uploader. Every builder returns the archive as ``bytes``, is
deterministic (fixed mtimes, gzip header mtime 0) and needs no disk; ``upload()``
puts the bytes into S3.

Well-formed layout (as biomlbench's uploader writes it, ``tarfile`` ``w:gz``, members
in the order ``tarfile.add`` walks a directory, i.e. sorted)::

    <run_group>/metadata.json
    <run_group>/<domain>/<task>_<uuid>/run.log
    <run_group>/<domain>/<task>_<uuid>/logs/<exp>/journal.json     (AIDE runs only)
    <run_group>/<domain>/<task>_<uuid>/logs/<exp>/{config.yaml,aide.log,best_solution.py,tree_plot.html}
    <run_group>/<domain>/<task>_<uuid>/{code,submission}/

Hostile archives start with a harmless ``<run_group>/`` and ``metadata.json`` and put
the hostile member(s) last, so an extractor that only checks the first members, or
that does not clean up after a partial extraction, is caught too. Builders whose
member points outside the extraction directory take that location as an argument:
tests should pass a path under their own ``tmp_path`` and assert nothing appeared
there; the default is the system temp directory.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

__all__ = [
    "DEFAULT_RUN_GROUP",
    "HOSTILE",
    "MTIME",
    "RunSpec",
    "absolute_path",
    "aide_journal",
    "bomb_many_members",
    "bomb_single_member",
    "device_node",
    "fifo",
    "hardlink_nonmember",
    "hardlink_outside",
    "journal_expectations",
    "journal_path",
    "not_gzip",
    "path_traversal",
    "run_group_archive",
    "symlink_dotdot",
    "symlink_outside",
    "truncated_gzip",
    "uncompressed_tar",
    "upload",
    "write_through_symlink",
    "zero_bytes",
]

#: Fixed member mtime (2025-08-25T17:09:05Z) so the same call gives the same bytes.
MTIME: Final = 1_756_141_745
DEFAULT_RUN_GROUP: Final = "2025-08-25T17-09-05-GMT_run-group_aide"
_KIB: Final = 1024
_MIB: Final = 1024 * 1024


# -- well-formed run groups ------------------------------------------------------------


@dataclass(frozen=True)
class RunSpec:
    """One run inside a run group.

    ``exp=None`` models a run of a non-AIDE agent: run.log but no ``logs/`` journal.
    ``journal`` overrides the generated AIDE journal (any JSON-able object, or raw
    bytes for malformed-journal tests).
    """

    task: str = "polarishub/polaris-adme-fang-perm-1"  # "<domain>/<task>"
    run_uuid: str = "d4042c36-f000-feb0-bce2-40c658780d0a"
    seed: int = 0
    exp: str | None = "6-quiet-amber-heron"
    steps: int = 4
    journal: Any = None

    @property
    def run_id(self) -> str:
        """The key biomlbench uses in metadata.json and as the run's folder."""
        return f"{self.task}_{self.run_uuid}"


# (exc_type, exc_info, last traceback line) as AIDE records them in the samples.
_EXCEPTIONS: Final[tuple[tuple[str, dict[str, Any], str], ...]] = (
    (
        "FileNotFoundError",
        {"args": ["2", "No such file or directory"]},
        "FileNotFoundError: [Errno 2] No such file or directory: './input/missing.json'",
    ),
    ("KeyError", {"args": ["label_does_not_exist"]}, "KeyError: 'label_does_not_exist'"),
    (
        "ValueError",
        {"args": ["Found input variables with inconsistent numbers of samples: [10, 7]"]},
        "ValueError: Found input variables with inconsistent numbers of samples: [10, 7]",
    ),
    (
        "ModuleNotFoundError",
        {
            "args": ["No module named 'lightgbm_missing_module'"],
            "name": "lightgbm_missing_module",
            "msg": "No module named 'lightgbm_missing_module'",
        },
        "ModuleNotFoundError: No module named 'lightgbm_missing_module'",
    ),
    (
        "TypeError",
        {"args": ["unsupported operand type(s) for +: 'int' and 'str'"]},
        "TypeError: unsupported operand type(s) for +: 'int' and 'str'",
    ),
)
_TIME_LINE: Final = "Execution time: a moment seconds (time limit is 2 seconds)."
_INTERPRETER: Final = "/opt/conda/envs/agent/lib/python3.11/site-packages/aide/interpreter.py"


def aide_journal(
    steps: int = 4, *, seed: int = 0, buggy: Sequence[bool] | None = None
) -> dict[str, Any]:
    """A small AIDE 0.2.2 journal with the fields and shapes AIDE's serializer writes.

    Node dicts carry ``parent: None`` and ``children: []``; the tree lives in the
    top-level ``node2parent`` map, and ``__version`` is the string ``"2"`` (as in the
    samples). Buggy nodes have an exception and ``metric.value None``; the others a
    float metric with ``maximize: True``. ``buggy`` defaults to every other step
    buggy, starting with step 0; ``seed`` varies ids, plans, metrics and exceptions.
    """
    rng = random.Random(seed)
    flags = list(buggy) if buggy is not None else [i % 2 == 0 for i in range(steps)]
    if len(flags) != steps:
        raise ValueError("buggy must have one flag per step")
    nodes: list[dict[str, Any]] = []
    node2parent: dict[str, str] = {}
    for step, is_buggy in enumerate(flags):
        node_id = f"{rng.getrandbits(128):032x}"
        plan = f"Fit a baseline model for step {step}. Uniqueness tag {rng.randrange(10**9)}."
        if is_buggy:
            exc_type, exc_info, last_line = rng.choice(_EXCEPTIONS)
            term_out = [
                "Traceback (most recent call last):\n"
                '  File "runfile.py", line 3, in <module>\n'
                f"{last_line}\n",
                _TIME_LINE,
            ]
            node = {
                "exc_type": exc_type,
                "exc_info": exc_info,
                "exc_stack": [
                    [_INTERPRETER, 147, "_run_session", "exec(compile(code, ...), global_scope)"],
                    ["runfile.py", 3, "<module>", "main()"],
                ],
                "analysis": f"The run failed: {_TIME_LINE}",
                "metric": {"value": None, "maximize": None},
            }
        else:
            score = round(rng.uniform(0.5, 0.9), 4)
            term_out = [f"Validation score: {score}", "\n", _TIME_LINE]
            node = {
                "exc_type": None,
                "exc_info": None,
                "exc_stack": None,
                "analysis": f"The model reached a validation score of {score}.",
                "metric": {"value": score, "maximize": True},
            }
        if step > 0 and nodes[-1]["is_buggy"]:
            node2parent[node_id] = nodes[-1]["id"]  # a debug step of the previous draft
        nodes.append(
            {
                "code": f"print('step {step}')\n",
                "plan": plan,
                "step": step,
                "id": node_id,
                "ctime": 1_795_538_927.0 + step,
                "parent": None,
                "children": [],
                "_term_out": term_out,
                "exec_time": round(rng.uniform(0.0001, 0.5), 6),
                "exc_type": node["exc_type"],
                "exc_info": node["exc_info"],
                "exc_stack": node["exc_stack"],
                "analysis": node["analysis"],
                "metric": node["metric"],
                "is_buggy": is_buggy,
            }
        )
    return {"nodes": nodes, "node2parent": node2parent, "__version": "2"}


def journal_expectations(journal: Mapping[str, Any]) -> dict[str, Any]:
    """What a correct parser must find in a journal, in ``expected.json``'s terms.

    Keys: ``steps``, ``buggy_steps``, ``exc_types`` (type -> count), ``best_metric``
    (best value among non-buggy nodes, maximising; None if there is none),
    ``node_ids`` and ``plans`` in step order.
    """
    nodes = sorted(journal["nodes"], key=lambda n: n["step"])
    exc_types: dict[str, int] = {}
    for node in nodes:
        if node["exc_type"]:
            exc_types[node["exc_type"]] = exc_types.get(node["exc_type"], 0) + 1
    metrics = [
        n["metric"]["value"]
        for n in nodes
        if not n["is_buggy"] and n["metric"] and n["metric"]["value"] is not None
    ]
    return {
        "steps": len(nodes),
        "buggy_steps": sum(1 for n in nodes if n["is_buggy"]),
        "exc_types": exc_types,
        "best_metric": max(metrics) if metrics else None,
        "node_ids": [n["id"] for n in nodes],
        "plans": [n["plan"] for n in nodes],
    }


def journal_path(run_group: str, run: RunSpec) -> str:
    """Member name of a run's journal.json inside its run group archive."""
    if run.exp is None:
        raise ValueError("a run without exp has no journal")
    return f"{run_group}/{run.run_id}/logs/{run.exp}/journal.json"


def run_group_archive(
    run_group: str = DEFAULT_RUN_GROUP,
    runs: Sequence[RunSpec] = (RunSpec(),),
    *,
    agent: str = "aide",
    extra_files: Mapping[str, bytes] | None = None,
) -> bytes:
    """A well-formed run group archive (see the module docstring for the layout).

    ``extra_files`` maps paths relative to the run group folder to contents, for
    tests that need more (e.g. a big ``submission/preds.csv``).
    """
    files: dict[str, bytes] = {}
    dirs: set[str] = {run_group}
    created_at = run_group.split("_run-group", 1)[0]
    metadata = {
        "run_group": run_group,
        "created_at": created_at,
        "runs": {
            run.run_id: {"task_id": run.task, "agent_id": agent, "seed": run.seed, "success": False}
            for run in runs
        },
        "agent_id": agent,
        "task_ids": sorted({run.task for run in runs}),
        "n_seeds": 1,
        "n_workers": 1,
    }
    files[f"{run_group}/metadata.json"] = json.dumps(metadata, indent=4).encode()
    for run in runs:
        base = f"{run_group}/{run.run_id}"
        dirs.update({f"{base}/code", f"{base}/submission"})
        files[f"{base}/run.log"] = (
            f"[Worker 0] Running seed {run.seed} for {run.task} and agent {agent}\n"
            f"[Worker 0] Agent completed without exception but failed internally for seed "
            f"{run.seed}, task {run.task}, agent {agent}\n"
        ).encode()
        if run.exp is None:
            continue
        logs = f"{base}/logs/{run.exp}"
        journal = run.journal if run.journal is not None else aide_journal(run.steps, seed=run.seed)
        if isinstance(journal, bytes):
            files[f"{logs}/journal.json"] = journal
        else:
            # AIDE writes compact JSON (no spaces after separators).
            files[f"{logs}/journal.json"] = json.dumps(journal, separators=(",", ":")).encode()
        files[f"{logs}/config.yaml"] = (
            f"exp_name: {run.exp}\nagent:\n  steps: {run.steps}\n".encode()
        )
        files[f"{logs}/aide.log"] = b"".join(b"[aide] step %d\n" % i for i in range(run.steps))
        files[f"{logs}/best_solution.py"] = b"print('best')\n"
        files[f"{logs}/tree_plot.html"] = b"<!doctype html>\n<html><body></body></html>\n"
    for rel, content in (extra_files or {}).items():
        files[f"{run_group}/{rel}"] = content
    for name in list(files):  # every parent folder gets its own entry, like tarfile.add
        parent = name.rsplit("/", 1)[0]
        while parent and parent not in dirs:
            dirs.add(parent)
            parent = parent.rsplit("/", 1)[0] if "/" in parent else ""
    entries: list[tuple[tarfile.TarInfo, bytes | None]] = []
    for name in _walk_order(dirs, files):
        if name in files:
            entries.append((_file(name, files[name]), files[name]))
        else:
            entries.append((_dir(name), None))
    return _targz(entries)


def _walk_order(dirs: set[str], files: Mapping[str, bytes]) -> list[str]:
    """Names in the order ``tarfile.add`` visits a tree: each folder, then its sorted
    children, depth first."""
    children: dict[str, list[str]] = {}
    for name in [*dirs, *files]:
        parent = name.rsplit("/", 1)[0] if "/" in name else ""
        children.setdefault(parent, []).append(name)
    order: list[str] = []

    def visit(name: str) -> None:
        order.append(name)
        for child in sorted(children.get(name, []), key=lambda c: c.rsplit("/", 1)[-1]):
            visit(child)

    for top in sorted(children.get("", [])):
        visit(top)
    return order


# -- tar plumbing --------------------------------------------------------------------


def _info(name: str, kind: bytes, *, size: int = 0, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = size
    info.mode = mode
    info.mtime = MTIME
    info.uname = info.gname = "root"
    return info


def _file(name: str, content: bytes) -> tarfile.TarInfo:
    return _info(name, tarfile.REGTYPE, size=len(content))


def _dir(name: str) -> tarfile.TarInfo:
    return _info(name, tarfile.DIRTYPE, mode=0o755)


def _targz(entries: Sequence[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    """Write entries into a gzip'd tar (PAX format, tarfile's default), reproducibly."""
    buffer = io.BytesIO()
    # mtime=0 in the gzip header: tarfile.open("w:gz") would stamp the current time.
    with (
        gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz,
        tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar,
    ):
        for info, content in entries:
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def _benign_prefix(run_group: str) -> list[tuple[tarfile.TarInfo, bytes | None]]:
    metadata = json.dumps({"run_group": run_group, "runs": {}}, indent=4).encode()
    return [(_dir(run_group), None), (_file(f"{run_group}/metadata.json", metadata), metadata)]


def _outside(path: str | os.PathLike[str] | None, leaf: str = "") -> str:
    base = os.fspath(path) if path is not None else tempfile.gettempdir()
    return os.path.join(base, leaf) if leaf else base


# -- hostile archives ------------------------------------------------------------------

_PAYLOAD: Final = b"written outside the extraction directory\n"


def path_traversal(
    name: str = "../tarfactory-escaped.txt", *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """A regular file whose name climbs out with ``..`` (classic tar slip)."""
    return _targz([*_benign_prefix(run_group), (_file(name, _PAYLOAD), _PAYLOAD)])


def absolute_path(
    target: str | os.PathLike[str] | None = None, *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """A regular file with an absolute name (default: a file in the system temp dir)."""
    name = os.fspath(target) if target is not None else _outside(None, "tarfactory-absolute.txt")
    if not os.path.isabs(name):
        raise ValueError("absolute_path needs an absolute target")
    return _targz([*_benign_prefix(run_group), (_file(name, _PAYLOAD), _PAYLOAD)])


def symlink_outside(
    outside: str | os.PathLike[str] | None = None, *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """``<run_group>/link`` -> an absolute path outside (default: the system temp dir)."""
    link = _info(f"{run_group}/link", tarfile.SYMTYPE, mode=0o777)
    link.linkname = _outside(outside)
    return _targz([*_benign_prefix(run_group), (link, None)])


def symlink_dotdot(target: str = "../../..", *, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """``<run_group>/link`` -> a relative target that escapes with ``..``."""
    link = _info(f"{run_group}/link", tarfile.SYMTYPE, mode=0o777)
    link.linkname = target
    return _targz([*_benign_prefix(run_group), (link, None)])


def hardlink_outside(
    target: str | os.PathLike[str] | None = None, *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """``<run_group>/hard`` hard-linked to a file outside (absolute or ``../`` path).

    A naive extractor running as root would link to, and later let us overwrite, any
    file on the host; the default target is a file name in the system temp dir.
    """
    link = _info(f"{run_group}/hard", tarfile.LNKTYPE)
    link.linkname = (
        os.fspath(target) if target is not None else _outside(None, "tarfactory-hardlink-target")
    )
    return _targz([*_benign_prefix(run_group), (link, None)])


def hardlink_nonmember(
    target: str = "does/not/exist.txt", *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """``<run_group>/hard`` hard-linked to a name that is not a member of the archive
    (``tarfile`` resolves such links against the filesystem)."""
    link = _info(f"{run_group}/hard", tarfile.LNKTYPE)
    link.linkname = f"{run_group}/{target}"
    return _targz([*_benign_prefix(run_group), (link, None)])


def device_node(
    kind: str = "char",
    *,
    major: int | None = None,
    minor: int | None = None,
    run_group: str = DEFAULT_RUN_GROUP,
) -> bytes:
    """A character (default 1,3 = /dev/null's numbers) or block (default 0,0) device.

    The numbers are harmless on purpose; what an extractor must reject is the type.
    """
    if kind not in ("char", "block"):
        raise ValueError("kind is 'char' or 'block'")
    char = kind == "char"
    node = _info(f"{run_group}/{kind}-device", tarfile.CHRTYPE if char else tarfile.BLKTYPE)
    node.devmajor = major if major is not None else (1 if char else 0)
    node.devminor = minor if minor is not None else (3 if char else 0)
    return _targz([*_benign_prefix(run_group), (node, None)])


def fifo(*, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A named pipe: opening it for reading later would block the parser forever."""
    return _targz(
        [*_benign_prefix(run_group), (_info(f"{run_group}/pipe", tarfile.FIFOTYPE), None)]
    )


def write_through_symlink(
    outside: str | os.PathLike[str] | None = None, *, run_group: str = DEFAULT_RUN_GROUP
) -> bytes:
    """``<run_group>/a`` -> outside, then the regular file ``<run_group>/a/x``.

    Each name looks fine on its own; extracting in order writes ``x`` into
    ``outside`` through the link created a moment earlier.
    """
    link = _info(f"{run_group}/a", tarfile.SYMTYPE, mode=0o777)
    link.linkname = _outside(outside)
    through = _file(f"{run_group}/a/x", _PAYLOAD)
    return _targz([*_benign_prefix(run_group), (link, None), (through, _PAYLOAD)])


def not_gzip() -> bytes:
    """Plain bytes with no gzip magic, like an HTML error page saved as .tar.gz."""
    return b"<html><body>This is not a gzip stream.</body></html>\n" * 8


def uncompressed_tar(run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A valid but uncompressed tar, i.e. a ``.tar.gz`` that is not gzip'd."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, content in _benign_prefix(run_group):
            tar.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def truncated_gzip(fraction: float = 0.5, archive: bytes | None = None) -> bytes:
    """The first ``fraction`` of a valid archive (default: a run group with a journal):
    gzip magic and some members are fine, then the stream just ends."""
    data = archive if archive is not None else run_group_archive(runs=(RunSpec(steps=8),))
    return data[: max(1, int(len(data) * fraction))]


def zero_bytes() -> bytes:
    """An empty object (an upload that died before writing anything)."""
    return b""


def bomb_single_member(size: int = _MIB * _KIB, *, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A valid tar.gz holding one folder and one file of ``size`` bytes of zeros.

    Deflate cannot do better than about 1:1030, so 1 GiB is ~1 MB compressed and the
    default is small to download yet large to extract. It is built without compressing
    the zeros: after a full flush deflate restarts from a clean state, so every 1 MiB of
    zeros compresses to the same bytes, which are repeated; the gzip CRC of the zeros is
    computed algebraically (:func:`_crc32_zeros`). Any ``size`` works (PAX headers carry
    sizes beyond tar's 8 GiB limit) at a cost of about 1 KB output per MiB claimed.
    """
    member = _info(f"{run_group}/zeros.bin", tarfile.REGTYPE, size=size)
    head = _dir(run_group).tobuf(tarfile.PAX_FORMAT) + member.tobuf(tarfile.PAX_FORMAT)
    # Everything after the headers is zeros: the data, its padding to a 512-byte block,
    # the two end-of-archive blocks and the padding to a 10 KiB record.
    padded = size + (-size % tarfile.BLOCKSIZE) + 2 * tarfile.BLOCKSIZE
    padded += -(len(head) + padded) % tarfile.RECORDSIZE
    return _gzip_head_then_zeros(head, padded)


def _gzip_head_then_zeros(head: bytes, zeros: int) -> bytes:
    """gzip(head + b"\\0" * zeros), in time and memory proportional to the output."""
    block = _MIB
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    parts = [compressor.compress(head), compressor.flush(zlib.Z_FULL_FLUSH)]
    whole, rest = divmod(zeros, block)
    if whole:
        first = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
        again = compressor.compress(bytes(block)) + compressor.flush(zlib.Z_FULL_FLUSH)
        if first != again:  # pragma: no cover - would mean zlib keeps state across flushes
            raise RuntimeError("deflate output is not periodic; cannot build the bomb")
        parts.append(first * whole)
    parts.append(compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FINISH))
    crc = _crc32_zeros(zlib.crc32(head), zeros)
    length = (len(head) + zeros) & 0xFFFFFFFF
    gzip_header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"  # deflate, mtime 0, max compression
    return b"".join([gzip_header, *parts, crc.to_bytes(4, "little"), length.to_bytes(4, "little")])


def _crc32_zeros(crc: int, count: int) -> int:
    """``zlib.crc32(bytes(count), crc)`` without touching ``count`` bytes.

    Feeding one zero byte is a linear map on CRC's internal register, so ``count``
    bytes are that 32x32 bit matrix raised to ``count`` (square-and-multiply).
    """

    def one_zero_byte(register: int) -> int:
        return zlib.crc32(b"\0", register ^ 0xFFFFFFFF) ^ 0xFFFFFFFF

    def apply(matrix: list[int], vector: int) -> int:
        out, bit = 0, 0
        while vector:
            if vector & 1:
                out ^= matrix[bit]
            vector >>= 1
            bit += 1
        return out

    def compose(a: list[int], b: list[int]) -> list[int]:
        return [apply(a, column) for column in b]

    step = [one_zero_byte(1 << bit) for bit in range(32)]
    power = [1 << bit for bit in range(32)]
    while count:
        if count & 1:
            power = compose(step, power)
        step = compose(step, step)
        count >>= 1
    return apply(power, crc ^ 0xFFFFFFFF) ^ 0xFFFFFFFF


def bomb_many_members(count: int = 100_000, *, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A valid tar.gz with ``count`` empty regular files ``<run_group>/m/<n>``.

    Tiny to download (~15 bytes per member) but each member costs the extractor a
    header parse, a path check and an inode, so it tests the member-count limit.
    Headers are stamped from a template (only name and checksum change), so 100 000
    members take well under a second.
    """
    width = max(7, len(str(count - 1)))
    template_name = f"{run_group}/m/{'0' * width}"
    if len(template_name) > 100:
        raise ValueError("run_group too long for a plain ustar name")
    template = bytearray(_file(template_name, b"").tobuf(tarfile.USTAR_FORMAT))
    name_offset = len(run_group) + 3  # digits start after "<run_group>/m/"
    chk_base = sum(template[:148]) + 8 * 0x20 + sum(template[156:]) - sum(b"0" * width)
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)  # wbits 31: gzip framing
    parts = [compressor.compress(_benign_tar_dir(run_group))]
    batch = bytearray()
    for n in range(count):
        digits = str(n).zfill(width).encode()
        template[name_offset : name_offset + width] = digits
        template[148:156] = b"%06o\0 " % (chk_base + sum(digits))
        batch += template
        if len(batch) >= _MIB:
            parts.append(compressor.compress(bytes(batch)))
            batch.clear()
    parts.append(compressor.compress(bytes(batch)))
    end = 2 * tarfile.BLOCKSIZE
    total = len(_benign_tar_dir(run_group)) + count * tarfile.BLOCKSIZE + end
    parts.append(compressor.compress(bytes(end + (-total % tarfile.RECORDSIZE))))
    parts.append(compressor.flush())
    return b"".join(parts)


def _benign_tar_dir(run_group: str) -> bytes:
    return _dir(run_group).tobuf(tarfile.USTAR_FORMAT) + _dir(f"{run_group}/m").tobuf(
        tarfile.USTAR_FORMAT
    )


#: Every hostile builder with its defaults, for parametrised "rejects it" tests. The two
#: bombs are sized for tests that lower the job's --max-bytes / --max-members; they are
#: far below the job's defaults (64 GiB, 1 000 000 members).
HOSTILE: Final[Mapping[str, Callable[[], bytes]]] = {
    "path_traversal": path_traversal,
    "absolute_path": absolute_path,
    "symlink_outside": symlink_outside,
    "symlink_dotdot": symlink_dotdot,
    "hardlink_outside": hardlink_outside,
    "hardlink_nonmember": hardlink_nonmember,
    "char_device": lambda: device_node("char"),
    "block_device": lambda: device_node("block"),
    "fifo": fifo,
    "write_through_symlink": write_through_symlink,
    "not_gzip": not_gzip,
    "uncompressed_tar": uncompressed_tar,
    "truncated_gzip": truncated_gzip,
    "zero_bytes": zero_bytes,
    "bomb_single_member": lambda: bomb_single_member(64 * _MIB),
    "bomb_many_members": lambda: bomb_many_members(20_000),
}


# -- S3 --------------------------------------------------------------------------------


def upload(s3_client: Any, bucket: str, key: str, data: bytes) -> str:
    """Put ``data`` at ``s3://bucket/key`` and return its ETag (quotes stripped)."""
    response = s3_client.put_object(Bucket=bucket, Key=key, Body=data)
    return str(response["ETag"]).strip('"')


def negative_pax_size(*, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A member whose PAX header says ``size=-1000000``: tarfile takes it as written.

    Without a check the running total of extracted bytes goes down by a million,
    so the big file after it passes a bomb guard it should have tripped.
    """
    pax = tarfile.TarInfo(f"{run_group}/credit.bin")
    pax.type = tarfile.REGTYPE
    pax.mtime = MTIME
    pax.pax_headers = {"size": "-1000000"}
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        tar.addfile(_dir(run_group))
        tar.addfile(pax)
        big = b"x" * 1_500_000
        tar.addfile(_file(f"{run_group}/big.bin", big), io.BytesIO(big))
    return gzip.compress(raw.getvalue(), mtime=0)


def long_member_name(length: int = 300, *, run_group: str = DEFAULT_RUN_GROUP) -> bytes:
    """A member whose file name is longer than any filesystem takes (NAME_MAX, 255 bytes)."""
    data = b"x"
    return _targz([*_benign_prefix(run_group), (_file(f"{run_group}/{'n' * length}", data), data)])
