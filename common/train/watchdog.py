"""A worker that outlives its launcher stops by itself."""
from __future__ import annotations

import os

LAUNCHER_CHECK_S = 1.0


def watch_launcher(launcher_pid: int) -> None:
    """Stop this worker within a second or two of its launcher's death (a job scheduler's
    kill -9 of the launcher's process group does not reach workers, which torch starts in
    sessions of their own): an orphan would train on, racing any resume in the same folder."""
    import sys
    import threading
    import time

    def watch() -> None:
        while os.getppid() == launcher_pid:
            time.sleep(LAUNCHER_CHECK_S)
        print(f"stopped: the launcher (pid {launcher_pid}) is gone; this worker (pid {os.getpid()}) stops too",
              file=sys.stderr, flush=True)
        os._exit(143)

    threading.Thread(target=watch, name="launcher-watch", daemon=True).start()
