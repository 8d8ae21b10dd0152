"""The project's benchmark: the job vs. the old way, plain tools and the floor.

Run ``.venv/bin/python -m bench --help``; bench/README.md explains every number.
"""
