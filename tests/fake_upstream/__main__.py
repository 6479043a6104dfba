"""Script mode: ``python tests/fake_upstream [--port N] ...`` or ``python -m fake_upstream``."""

import sys
from pathlib import Path

if not __package__:  # run as a folder: make the package importable by its name
    sys.path[0] = str(Path(__file__).resolve().parent.parent)

from fake_upstream import main

sys.exit(main())
