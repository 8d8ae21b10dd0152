"""How tests start the job as users do: a separate process running ``python -m job``."""

from __future__ import annotations

import sys
from pathlib import Path


def download_argv(bucket: str, out: Path, *extra: str) -> list[str]:
    """``analyze-failures download`` of ``s3://<bucket>/failed_runs/`` into ``out``."""
    return [
        sys.executable, "-m", "job", "download",
        "--bucket-path", f"s3://{bucket}/failed_runs/",
        "--output-dir", str(out),
        *extra,
    ]  # fmt: skip
