"""`python -m wanmock.mockserver` runs the `wanmock` command line."""

import sys

from wanmock.mockserver.cli import main

sys.exit(main())
