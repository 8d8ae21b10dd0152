"""What a journal's path says about the run it belongs to (pure string logic, no I/O).

biomlbench lays a run group out as
``<run_group>/<domain>/<task>_<run uuid>/logs/<experiment>/journal.json``; after
download the run group folder usually appears twice (archive folder, then the tar's
top entry) and cloud keys add folders above it (``aide/<task>/<G>/<G>/...``). So
nothing here counts folders from the top: everything is read from the journal
upwards, and the run group is the nearest folder whose name ends in
``_run-group_<agent>``. When a piece cannot be derived it is left ``None`` and a
warning says why, because a journal in an unexpected place is still worth reading.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from job.core.textsafe import scrub_surrogates

JOURNAL_NAME = "journal.json"
LOGS_FOLDER = "logs"
REPORT_SUFFIX = ".txt"
RUN_GROUP_MARKER = "_run-group_"

_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
#: Task names contain underscores (``A0A140D2T1_ZIKV_Sourisseau_2019``): the uuid is split off the end.
_RUN_UUID = re.compile(_UUID)
#: ``<task>_<uuid>``: the uuid is the fixed-length end, the task everything before it.
_UUID_LEN = 36


@dataclass(frozen=True)
class Layout:
    """Everything the path of one journal tells us; ``None`` means "could not derive"."""

    journal: str  # POSIX path relative to the failed-runs folder
    run_folder: str  # POSIX path of the folder holding ``logs/``; "" at the top
    experiment: str
    run_id: str | None = None  # the run folder's name, ``<task>_<uuid>``
    task: str | None = None
    run_uuid: str | None = None
    domain: str | None = None
    run_group: str | None = None
    agent: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def task_id(self) -> str | None:
        """biomlbench's task id, ``<domain>/<task>`` (as in the run group's metadata.json)."""
        if self.task is None:
            return None
        return f"{self.domain}/{self.task}" if self.domain else self.task

    @property
    def report(self) -> str:
        """Report path relative to the output folder: mirrors the failed-runs tree.

        ``<run folder>/<experiment>.txt`` is unique because the journal path is
        ``<run folder>/logs/<experiment>/journal.json``, and stable across runs.
        """
        return posixpath.join(self.run_folder, self.experiment + REPORT_SUFFIX)


def is_journal_path(parts: tuple[str, ...] | list[str]) -> bool:
    """True for ``.../logs/<experiment>/journal.json`` (any depth, even at the top)."""
    return len(parts) >= 3 and parts[-1] == JOURNAL_NAME and parts[-3] == LOGS_FOLDER


def derive_layout(journal: str | PurePosixPath) -> Layout:
    """Read run group, agent, domain, task, run uuid and experiment off a journal path.

    ``journal`` is relative to the failed-runs folder, with forward slashes. Text
    that cannot be encoded (undecodable bytes in file names) is replaced with
    U+FFFD so every field can go into JSON and reports as is.
    """
    text = scrub_surrogates(str(journal))
    parts = PurePosixPath(text).parts
    if not is_journal_path(parts):
        raise ValueError(f"not a journal path (.../logs/<experiment>/journal.json): {text!r}")
    run = len(parts) - 4  # index of the run folder; -1 when logs/ is at the top
    warnings: list[str] = []
    fields: dict[str, str | None] = {}
    if run < 0:
        warnings.append("journal is not inside a run folder: run, task and run group unknown")
    else:
        fields |= _run_folder_fields(parts[run], warnings)
        fields |= _group_fields(parts[:run], warnings)
    return Layout(
        journal=text,
        run_folder="/".join(parts[: max(run + 1, 0)]),
        experiment=parts[-2],
        warnings=tuple(warnings),
        **fields,
    )


def _run_folder_fields(name: str, warnings: list[str]) -> dict[str, str | None]:
    task, sep, run_uuid = (
        name[: -_UUID_LEN - 1],
        name[-_UUID_LEN - 1 : -_UUID_LEN],
        name[-_UUID_LEN:],
    )
    if not task or sep != "_" or "\n" in task or _RUN_UUID.fullmatch(run_uuid) is None:
        warnings.append(
            f"run folder {name!r} is not named '<task>_<run uuid>': task and run uuid unknown"
        )
        return {"run_id": name}
    return {"run_id": name, "task": task, "run_uuid": run_uuid}


def _group_fields(above: tuple[str, ...], warnings: list[str]) -> dict[str, str | None]:
    """Run group, agent and domain from the folders above the run folder (nearest first)."""
    group_at = next(
        (i for i in range(len(above) - 1, -1, -1) if RUN_GROUP_MARKER in above[i]), None
    )
    if group_at is None:
        return _fallback_group(above, warnings)
    group = above[group_at]
    between = above[group_at + 1 :]
    domain: str | None = None
    if not between:
        warnings.append(f"no domain folder between run group {group!r} and the run folder")
    else:
        domain = between[-1]
        if len(between) > 1:
            extra = "/".join(between[:-1])
            warnings.append(
                f"unexpected folders {extra!r} between run group {group!r} and domain {domain!r}"
            )
    return {"run_group": group, "agent": _agent(group, warnings), "domain": domain}


def _fallback_group(above: tuple[str, ...], warnings: list[str]) -> dict[str, str | None]:
    """No ``*_run-group_<agent>`` folder: take biomlbench's positions, and say so."""
    domain = above[-1] if above else None
    group = above[-2] if len(above) >= 2 else None
    if group is None:
        warnings.append(
            f"no run group folder (named '<...>{RUN_GROUP_MARKER}<agent>') above the run "
            "folder: run group and agent unknown"
        )
        if domain is None:
            warnings.append("no domain folder above the run folder: domain unknown")
    else:
        warnings.append(
            f"no folder named '<...>{RUN_GROUP_MARKER}<agent>' above the run folder: took "
            f"{group!r} (two levels up) as the run group; agent unknown"
        )
    return {"run_group": group, "agent": None, "domain": domain}


def _agent(group: str, warnings: list[str]) -> str | None:
    agent = group.rpartition(RUN_GROUP_MARKER)[2]
    if not agent:
        warnings.append(f"run group {group!r} names no agent after {RUN_GROUP_MARKER!r}")
        return None
    return agent
