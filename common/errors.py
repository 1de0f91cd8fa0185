"""User-facing errors: one line that names the problem and the fix, no traceback."""
from __future__ import annotations

import sys
from collections.abc import Callable


class UserError(Exception):
    """Bad input or a bad setting; the message says what is wrong and what to do."""


def run_cli(main: Callable[[], object], reports: Callable[[], bool] = lambda: True) -> None:
    """Run a script's `main`, turning a UserError into one line on stderr and exit code 2.

    In a multi-process run every process meets the same error; `reports` says whether this
    one prints it, so the user reads it once. The others exit with the same code, quietly."""
    try:
        main()
    except UserError as err:
        if reports():
            print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
