"""`python -m bftnode …` = the `bftnode` console script (see bftnode.cli)."""

import sys

from bftnode.cli import main

sys.exit(main())
