"""``python -m harrier.train --config recipe.yaml`` (the torchrun entry) and the training subcommands."""

from __future__ import annotations

import sys

from harrier.train.cli import main

if __name__ == "__main__":
    sys.exit(main())
