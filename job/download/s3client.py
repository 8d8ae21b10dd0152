"""Build the run's boto3 S3 clients: one per process, shared by that process's threads.

botocore's retries are disabled (``total_max_attempts=1``) because
:mod:`job.download.retrying` owns retrying; two layers would multiply attempts and hide
the causes from the logs. The connection pool is sized to the concurrency so
workers reuse connections instead of queueing for them.
"""

from __future__ import annotations

import gzip
import os
from typing import Any

import boto3
import botocore
import botocore.config
import botocore.exceptions as bce
import botocore.loaders
import botocore.session
import orjson

from job.core.config import S3Settings
from job.core.errors import UsageError
from job.core.logs import register_secrets
from job.download.awserrors import explain_config_error


def _custom_endpoint(settings: S3Settings) -> bool:
    return bool(
        settings.endpoint_url
        or os.environ.get("AWS_ENDPOINT_URL_S3")
        or os.environ.get("AWS_ENDPOINT_URL")
    )


class _OrjsonModelLoader:
    """Reads botocore's bundled model files with orjson.

    botocore parses about 1 MB of JSON (the S3 model, its endpoint rules, the
    partitions) with ``json`` and an ``OrderedDict`` hook at every start; that
    was a tenth of a second of a run whose whole budget is about one second
    (see docs/PERFORMANCE.md). orjson keeps key order too, which is all the
    OrderedDicts were for. Same file lookup as botocore: ``<path>.json``, then
    ``<path>.json.gz``.
    """

    def exists(self, file_path: str) -> bool:
        return os.path.isfile(file_path + ".json") or os.path.isfile(file_path + ".json.gz")

    def load_file(self, file_path: str) -> Any:
        for suffix, opener in ((".json", open), (".json.gz", gzip.open)):
            path = file_path + suffix
            if os.path.isfile(path):
                with opener(path, "rb") as fp:
                    return orjson.loads(fp.read())
        return None


#: The services a run's session may need: S3, and those the credential chain calls
#: itself (SSO and its token refresh, STS for assumed roles, ``aws login`` sessions).
SESSION_SERVICES = ("s3", "sso", "sso-oidc", "sts", "signin")


class _S3ModelLoader(botocore.loaders.Loader):
    """botocore's model loader, for a session that only ever makes S3 clients.

    Before loading a model botocore checks that the service exists by listing
    every service it ships: about 900 ``listdir`` and 2,800 ``stat`` calls, 25 ms
    of every start (see docs/PERFORMANCE.md). Here only the folders of
    :data:`SESSION_SERVICES` are looked at (S3's, and those an SSO or assumed-role
    profile needs to get credentials: without them such a profile failed with
    "Unknown service: 'sso'"); asking for any other service fails as for an unknown one.
    """

    def list_available_services(self, type_name: str) -> list[str]:
        found: list[str] = []
        for service in SESSION_SERVICES:
            for root in self.search_paths:
                folder = os.path.join(root, service)
                try:
                    versions = os.listdir(folder)
                except OSError:
                    continue
                if any(
                    self.file_loader.exists(os.path.join(folder, v, type_name)) for v in versions
                ):
                    found.append(service)
                    break
        return found


def _session() -> boto3.session.Session:
    core = botocore.session.get_session()
    default = core.get_component("data_loader")
    core.register_component(
        "data_loader",
        _S3ModelLoader(
            extra_search_paths=default.search_paths,  # the same folders, in the same order
            file_loader=_OrjsonModelLoader(),
            include_default_search_paths=False,
        ),
    )
    return boto3.session.Session(botocore_session=core)


class ClientMaker:
    """One session, from which the run's clients are made: the parent's and each worker's.

    Every client must be the process's own (a connection pool shared across a
    fork would interleave two processes' requests on one socket), but a new
    session per worker would load and parse S3's model again: about 50 ms and
    20 MB per worker. A worker forked after the parent made its client finds
    the model already in this session's cache and makes its own in about
    10 ms and 6 MB (docs/PERFORMANCE.md). The credentials resolved by the
    parent come along the same way, so a credential process or an SSO token
    is asked once per run, not once per worker.
    """

    def __init__(self, settings: S3Settings) -> None:
        self.settings = settings
        self.session: boto3.session.Session | None = None

    def client(self, *, pool_size: int) -> Any:
        """A new client; any AWS configuration problem becomes a one-line UsageError.

        botocore reads the profile, config files and credential sources lazily, from
        the session's constructor to the first credential lookup, so the whole
        construction is guarded, not one call.
        """
        try:
            if self.session is None:
                self.session = _session()
            return _make_client(self.session, self.settings, pool_size=pool_size)
        except bce.BotoCoreError as exc:
            explained = explain_config_error(exc)
            raise (explained or UsageError(f"invalid S3 configuration: {exc}")) from None


def make_client(settings: S3Settings, *, pool_size: int) -> Any:
    """A client of its own session, for callers that need just one."""
    return ClientMaker(settings).client(pool_size=pool_size)


def _make_client(session: boto3.session.Session, settings: S3Settings, *, pool_size: int) -> Any:
    config = botocore.config.Config(
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=max(10, pool_size + 2),
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        tcp_keepalive=True,
        signature_version=botocore.UNSIGNED if settings.no_sign_request else None,
        # S3-compatible servers (MinIO, rclone, Ceph) expect path-style URLs.
        s3={"addressing_style": "path"} if _custom_endpoint(settings) else None,
        user_agent_extra="biomlbench-failure-analysis",
    )
    try:
        client = session.client("s3", endpoint_url=settings.endpoint_url, config=config)
    except bce.BotoCoreError:
        raise  # explained by ClientMaker.client (some are ValueErrors too, e.g. a bad region)
    except ValueError as exc:  # e.g. a malformed --endpoint-url
        raise UsageError(f"invalid S3 configuration: {exc}") from None
    if not settings.no_sign_request:
        # Resolving (and freezing) the credentials here, not at the first request,
        # makes an expired SSO session or a failing credential_process a usage error
        # before anything starts.
        creds = session.get_credentials()
        if creds is not None:
            frozen = creds.get_frozen_credentials()
            register_secrets([frozen.secret_key, frozen.token])
    return client
