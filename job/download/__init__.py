"""The download stage: list -> plan -> fetch -> verify -> extract safely -> publish -> record.

Reads S3 (``--bucket-path``) and the previous manifest; writes one folder per
archive under ``failed_runs/``, each published only when complete, and the
manifest. Entry point: :func:`job.download.stage.run_download`, which tells its
caller about each published folder through ``on_published`` (that is how ``run``
starts parsing early without this package knowing about the parse). The
per-archive work (GET, gunzip, tar, writes: :mod:`job.download.receive`) runs in
worker processes (:mod:`job.download.workers`); everything decided once per run
stays in the calling process.
Depends on :mod:`job.core` and :mod:`job.model` only.
"""
