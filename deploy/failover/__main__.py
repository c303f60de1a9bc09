"""``python -m deploy.failover``: see :mod:`deploy.failover.run`."""

import sys

from .run import main

sys.exit(main())
