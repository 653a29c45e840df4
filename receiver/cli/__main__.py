"""`python -m receiver.cli`: the `receiver` command."""

import sys

from receiver.cli import main

sys.exit(main())
