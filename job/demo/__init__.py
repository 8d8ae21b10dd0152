"""A demo with no AWS account: a generated bucket of realistic failed runs, served on loopback.

:mod:`job.demo.synthetic` writes run-group archives the way biomlbench does,
:mod:`job.demo.locals3` serves a folder as S3 (``rclone serve s3``), and
``python -m job.demo`` runs the whole job against them. The tests and the bench
use the same pieces. Sits on top: it drives :mod:`job.cli` like a user would.
"""
