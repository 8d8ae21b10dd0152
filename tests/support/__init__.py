"""Test-only helpers: a fault-injecting S3 proxy and a tar.gz archive factory.

Import them as ``from support.faultproxy import FaultProxy`` and
``from support import tarfactory``: pytest puts ``tests/`` on ``sys.path`` because
``tests/conftest.py`` lives there and ``tests/`` has no ``__init__.py``.
"""
