"""Fetch failed biomlbench run groups from S3 and explain why the agents failed."""

__version__ = "0.1.0"
