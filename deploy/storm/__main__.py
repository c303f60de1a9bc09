"""``python -m deploy.storm``: see :mod:`deploy.storm.run`."""

import sys

from .run import main

sys.exit(main())
