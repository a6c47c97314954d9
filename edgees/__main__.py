"""`python -m edgees`: the edgees command."""

import sys

from edgees.cli import main

sys.exit(main())
