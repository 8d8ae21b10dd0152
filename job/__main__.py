"""Allow ``python -m job`` as an alias of the ``analyze-failures`` console script."""

from job.cli import main

raise SystemExit(main())
