"""``python -m finsim_mesa.cli``: the ``finsim`` command."""

import sys

from finsim_mesa.cli import main

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
