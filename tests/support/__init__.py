"""Test-only helpers: a fault-injecting S3 proxy and a tar.gz archive factory.

Import them as ``from tests.support.faultproxy import FaultProxy`` and
``from tests.support import tarfactory`` (``tests`` is a package).
"""
