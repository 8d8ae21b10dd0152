"""Find the failed-run archives under an S3 prefix and map each to its output folder."""

from __future__ import annotations

import difflib
import posixpath
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import botocore.exceptions as bce

from job.core.atomic import TEMP_MARKER
from job.core.config import RetrySettings, Shard, shard_of
from job.core.errors import UsageError
from job.download.awserrors import explain_config_error
from job.download.retrying import client_error_code, diagnose, retrying

ARCHIVE_SUFFIX = ".tar.gz"
RESERVED_TOP_LEVEL = ("manifest",)


@dataclass(frozen=True)
class BucketPath:
    bucket: str
    prefix: str  # "" or ends with "/"

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def parse_bucket_path(text: str) -> BucketPath:
    parsed = urlparse(text)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise UsageError(f"--bucket-path must look like s3://BUCKET/PREFIX/, got {text!r}")
    prefix = parsed.path.lstrip("/")
    if prefix and not prefix.endswith("/"):
        prefix += "/"
    return BucketPath(parsed.netloc, prefix)


@dataclass(frozen=True)
class Archive:
    key: str
    size: int
    etag: str
    folder: str  # relative POSIX path of the extraction folder under the output dir


def folder_for(key: str, prefix: str) -> str | None:
    """``prefix/aide/x/G.tar.gz`` -> ``aide/x/G``; None when the key can't be a safe folder."""
    rel = key[len(prefix) :] if key.startswith(prefix) else key
    rel = rel[: -len(ARCHIVE_SUFFIX)]
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        return None
    if any(p.startswith(".") and TEMP_MARKER in p for p in parts) or "\x00" in rel:
        return None
    if posixpath.normpath(rel) != rel:
        return None
    if len(parts) == 1 and parts[0].startswith(RESERVED_TOP_LEVEL) and parts[0].endswith(".json"):
        return None  # would collide with the manifest files
    return rel


def folder_clashes(keys_by_folder: dict[str, str]) -> dict[str, str]:
    """Folders that can't be published without harming another key's: folder -> reason.

    Every key gets its own folder, published by replacing that folder whole. Two
    shapes of keys break that, and in both the odd one out fails (every night, with
    this reason) so that the other keeps working and nothing it published is lost:

    * ``X.tar.gz`` beside ``X/Y.tar.gz``: folder ``X`` would contain ``X/Y``, and
      publishing ``X`` would delete ``X/Y`` while the manifest still says it
      succeeded. The *containing* key fails.
    * ``Z.tar.gz.tar.gz`` beside ``Z.tar.gz``: folder ``Z.tar.gz`` is the very name
      of ``Z``'s kept archive (``--keep-compressed``), which ``Z``'s publishing
      replaces or removes. The ``.tar.gz.tar.gz`` key fails.
    """
    containers: dict[str, str] = {}
    for folder, key in keys_by_folder.items():
        parts = folder.split("/")
        for i in range(1, len(parts)):
            containers.setdefault("/".join(parts[:i]), key)
    clashes = {}
    for folder in keys_by_folder:
        if folder in containers:
            clashes[folder] = (
                f"key's folder {folder!r} would contain the folder of {containers[folder]!r} "
                "(and publishing it would delete that one): rename one of the two keys"
            )
        elif folder.endswith(ARCHIVE_SUFFIX) and folder[: -len(ARCHIVE_SUFFIX)] in keys_by_folder:
            other = keys_by_folder[folder[: -len(ARCHIVE_SUFFIX)]]
            clashes[folder] = (
                f"key's folder {folder!r} is the name of {other!r}'s kept archive: "
                "rename the .tar.gz.tar.gz key"
            )
    return clashes


def _explain_listing_error(exc: BaseException, where: BucketPath) -> UsageError:
    configuration = explain_config_error(exc)
    if configuration is not None:
        return configuration
    if isinstance(exc, bce.ClientError):
        code, status = client_error_code(exc)
        if code == "NoSuchBucket":
            return UsageError(f"bucket {where.bucket!r} does not exist: check --bucket-path")
        if code in ("InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"):
            return UsageError(
                f"S3 rejected the credentials ({code}): check AWS_PROFILE / AWS_* variables"
            )
        if code in ("AccessDenied", "AllAccessDisabled") or status == 403:
            return UsageError(f"access denied listing {where}: check the credentials' permissions")
        return UsageError(f"cannot list {where}: {code} (HTTP {status})")
    return UsageError(f"cannot list {where}: {diagnose(exc).cause}")


def list_archives(
    client: Any,
    where: BucketPath,
    *,
    retry: RetrySettings,
    shard: Shard,
    on_retry: Callable[[int, BaseException, float], Any] | None = None,
    before_request: Callable[[], Any] | None = None,
) -> tuple[list[Archive], list[tuple[str, str]]]:
    """All archives in this shard, sorted by key, and keys that map to no safe folder.

    Each page request is retried on its own, so one throttled page doesn't restart
    a listing of ten thousand keys.
    """
    archives: list[Archive] = []
    rejected: list[tuple[str, str]] = []
    objects = [
        obj
        for obj in _iter_objects(client, where, retry, on_retry, before_request)
        if obj["Key"].endswith(ARCHIVE_SUFFIX)
    ]
    # Clashes are judged on the whole listing, before sharding, so that every
    # shard worker makes the same decision about the same pair of keys.
    clashes = folder_clashes(
        {f: obj["Key"] for obj in objects if (f := folder_for(obj["Key"], where.prefix))}
    )
    for obj in objects:
        key = obj["Key"]
        if shard.active and shard_of(key, shard.count) != shard.index:
            continue
        folder = folder_for(key, where.prefix)
        if folder is None:
            rejected.append((key, "key does not map to a safe folder name"))
            continue
        if folder in clashes:
            rejected.append((key, clashes[folder]))
            continue
        archives.append(
            Archive(
                key=key,
                size=int(obj.get("Size", 0)),
                etag=str(obj.get("ETag", "")).strip('"'),
                folder=folder,
            )
        )
    archives.sort(key=lambda a: a.key)
    return archives, rejected


def _iter_objects(
    client: Any,
    where: BucketPath,
    retry: RetrySettings,
    on_retry: Callable[[int, BaseException, float], Any] | None,
    before_request: Callable[[], Any] | None,
) -> Iterator[dict[str, Any]]:
    token: str | None = None
    while True:
        kwargs: dict[str, Any] = {"Bucket": where.bucket, "Prefix": where.prefix, "MaxKeys": 1000}
        if token:
            kwargs["ContinuationToken"] = token
        try:
            for attempt in retrying(retry, on_retry=on_retry):
                with attempt:
                    if before_request:
                        before_request()
                    page = client.list_objects_v2(**kwargs)
        except (bce.BotoCoreError, bce.ClientError) as exc:
            raise _explain_listing_error(exc, where) from None
        yield from page.get("Contents", []) or []
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:
            return


def nearest_prefixes(client: Any, where: BucketPath, *, limit: int = 5) -> list[str]:
    """Prefixes beside ``where`` that do exist, closest in spelling first (one list call).

    For a typo in --bucket-path (``failed_run/`` for ``failed_runs/``) the
    right prefix is usually a sibling, so the parent is listed once with a
    delimiter. Any error just means no suggestion: this only decorates a warning.
    """
    wanted = where.prefix.rstrip("/")
    parent = posixpath.dirname(wanted)
    parent = f"{parent}/" if parent else ""
    try:
        page = client.list_objects_v2(
            Bucket=where.bucket, Prefix=parent, Delimiter="/", MaxKeys=1000
        )
    except Exception:
        return []
    found = [p["Prefix"] for p in page.get("CommonPrefixes", []) or [] if p.get("Prefix")]
    found = [p for p in found if p != where.prefix]
    ranked = sorted(
        found,
        key=lambda p: -difflib.SequenceMatcher(None, wanted, p.rstrip("/")).ratio(),
    )
    return [str(BucketPath(where.bucket, p)) for p in ranked[:limit]]
