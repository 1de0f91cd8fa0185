"""Naming the processes that went silent when a collective times out, from their heartbeats."""
from __future__ import annotations

import os
import re
import socket
import time
from typing import Any

from common.errors import ProcessError, UserError
from common.files import process_alive

HEARTBEAT_S = 1.0
GONE_WITHIN_S = 1.0  # how long a killed process may still show in the process table
_heartbeat: Heartbeat | None = None


class Heartbeat:
    """Each process of a multi-process run bumps a counter in the process group's key-value store
    every second, so that when a collective times out the survivors can name the processes (and
    machines) that went silent. The store is torch's default one, reached through a private
    function: where torch has moved it, runs go on without names (said in the message)."""

    def __init__(self, rank: int, world: int):
        import threading

        import torch.distributed.distributed_c10d as c10d

        self.store: Any = c10d._get_default_store()
        self.world = world
        self.store.set(f"tabular/who/{rank}", f"{socket.gethostname()} (rank {rank}, pid {os.getpid()})")
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._beat, args=(rank,), name="heartbeat", daemon=True)
        self.thread.start()

    def _beat(self, rank: int) -> None:
        while not self.stopping.is_set():
            try:
                self.store.add(f"tabular/beat/{rank}", 1)
            except Exception:  # the store's machine is gone: nothing left to tell
                return
            self.stopping.wait(HEARTBEAT_S)

    def stop(self) -> None:
        """Ends the beats while every process is still there to answer one. A beat left running
        into the interpreter's exit, inside the store's C++ call when the machine holding the
        store has gone, aborted 2 in 8 two-process runs on a busy machine ("terminate called
        without an active exception") after they had saved everything."""
        self.stopping.set()
        self.thread.join(timeout=2 * HEARTBEAT_S)

    def silent(self) -> list[str]:
        """The processes whose counter did not move over three heartbeats."""
        import time

        def counts() -> list[int]:
            return [self.store.add(f"tabular/beat/{r}", 0) for r in range(self.world)]

        before = counts()
        time.sleep(3 * HEARTBEAT_S)
        after = counts()
        return [self.store.get(f"tabular/who/{r}").decode() for r in range(self.world) if after[r] == before[r]]


def start_heartbeat(rank: int, world: int) -> None:
    import atexit

    global _heartbeat
    try:
        _heartbeat = Heartbeat(rank, world)
    except Exception:  # torch moved its default store: no names in timeout messages
        _heartbeat = None
        return
    # A run that ends on an error never reaches run_training's stop. There the store's machine
    # may be gone already: the join then gives up after two heartbeats, a beat still in its call.
    atexit.register(stop_heartbeat)


def stop_heartbeat() -> None:
    global _heartbeat
    if _heartbeat is not None:
        _heartbeat.stop()
        _heartbeat = None  # stopped beats would name every process silent


def silent_processes() -> str:
    if _heartbeat is None:
        return "which one is not known here"
    try:
        silent = _heartbeat.silent()
    except Exception:  # the store lives with the main process: it is the one that went
        return "the main process's machine, which holds the run's store, did not answer"
    return f"silent: {', '.join(silent)}" if silent else "all are answering again"


def lost_peers(err: RuntimeError, timeout_s: int) -> Exception:
    """A collective that timed out (a process stopped answering, a machine lost) or whose peer
    went away (it ended on an error of its own, which it reports) as one line; any other
    RuntimeError as it is."""
    text = str(err).lower()
    first = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
    if "timed out" in text or "timeout" in text:
        return UserError(f"a process stopped answering for {timeout_s} s ({silent_processes()}; {first}): check "
                         "that process and its machine, then --resume from the last checkpoint")
    if "connection closed by peer" in text or "connection reset" in text or "broken pipe" in text:
        said = (f"another process of the run has stopped ({first}): where it printed no error of its own it was "
                "killed (a signal, or out of memory; see its machine's log), else its line says why; then --resume "
                "from the last checkpoint")
        # Each machine's main process says a run's errors; where the one that stopped is that main
        # process, the first one left on its machine says so, else nobody would.
        return ProcessError(said) if first_one_left() else UserError(said)
    return err


def first_one_left() -> bool:
    """Whether this process is not its machine's main one, and every process of its machine
    ranked before it (the main one among them) is gone. False where that cannot be told. (Where
    the main process ended on an error it printed, this one adds the line that it has stopped.)"""
    rank = int(os.environ.get("RANK", "0"))
    if _heartbeat is None or os.environ.get("LOCAL_RANK", "0") == "0":
        return False
    try:  # each process wrote "host (rank r, pid p)" at start; the store lives with the launcher
        said = [_heartbeat.store.get(f"tabular/who/{r}").decode() for r in range(rank)]
    except Exception:  # the store is gone too: the main process's machine, whose process says so
        return False
    host = socket.gethostname()
    found = [re.fullmatch(r"(.*) \(rank \d+, pid (\d+)\)", who) for who in said]
    pids = [int(m[2]) for m in found if m is not None and m[1] == host]
    # A process killed drops its connections before it is gone from the process table: a moment's grace.
    deadline = time.monotonic() + GONE_WITHIN_S
    while any(process_alive(pid) for pid in pids):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return bool(pids)
