"""User-facing errors: one line that names the problem and the fix, no traceback."""
from __future__ import annotations

import sys
from typing import Callable


class UserError(Exception):
    """Bad input or a bad setting; the message says what is wrong and what to do."""


def run_cli(main: Callable[[], object]) -> None:
    """Run a script's `main`, turning a UserError into one line on stderr and exit code 2."""
    try:
        main()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
