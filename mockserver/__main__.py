"""`python -m mockserver` runs the `wanmock` command line."""

import sys

from mockserver.cli import main

sys.exit(main())
