"""``python -m sc_print``: the ``sc-print`` command line (:mod:`sc_print._cli`); the demo lives in ``_demo``."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point: the ``sc-print`` command line (:mod:`sc_print._cli`), as ``python -m sc_print``."""
    from sc_print._cli import main as cli_main

    return cli_main(argv, prog="python -m sc_print")


if __name__ == "__main__":
    sys.exit(main())
