"""Plumbing every stage uses: configuration, errors, logging, signals, summaries, atomic writes.

Reads the environment and the command line's values; writes nothing of its own
except through :mod:`job.core.atomic` (files appear complete or not at all).
Imports nothing else from ``job``: every other package may depend on it.
"""
