"""Naming the processes that went silent when a collective times out (common/train/heartbeat.py)."""
from common.train.heartbeat import lost_peers


def test_a_collective_that_timed_out_is_one_line():
    message = str(lost_peers(RuntimeError("[gloo] Timed out waiting 5000ms for recv operation"), 5))
    assert "stopped answering for 5 s" in message and "--resume" in message
    other = RuntimeError("something else")
    assert lost_peers(other, 5) is other


def test_a_peer_that_went_away_is_one_line_that_does_not_promise_its_own():
    """A peer killed by a signal prints nothing: the line must not send the user to look for one."""
    message = str(lost_peers(RuntimeError("[gloo] Connection closed by peer [127.0.0.1]:4120"), 5))
    assert "another process of the run has stopped" in message and "killed" in message and "--resume" in message


def test_a_stopped_heartbeat_ends_its_thread_and_beats_no_more(monkeypatch):
    """The beats end before the process group does (a beat left running into the exit, inside
    the store's call, aborted two-process runs after they had saved everything)."""
    import threading

    import torch.distributed.distributed_c10d as c10d

    from common.train import heartbeat

    class Store:
        def __init__(self):
            self.beats, self.lock = 0, threading.Lock()

        def set(self, key, value):
            pass

        def add(self, key, amount):
            with self.lock:
                self.beats += amount
            return self.beats

    store = Store()
    monkeypatch.setattr(c10d, "_get_default_store", lambda: store)
    monkeypatch.setattr(heartbeat, "HEARTBEAT_S", 0.01)
    beating = heartbeat.Heartbeat(0, 1)
    while store.beats < 3:  # it beats until stopped
        threading.Event().wait(0.01)
    beating.stop()
    beating.thread.join(5)  # stop() waits 2 beats (0.02 s here); a busy machine may need longer
    assert not beating.thread.is_alive()
    after = store.beats
    threading.Event().wait(0.05)
    assert store.beats == after


def test_where_the_machines_main_process_is_gone_the_first_one_left_says_why(monkeypatch):
    """Rank 0 killed: rank 1 met the broken connection, left it to its machine's main process,
    which was the one killed, and the run ended without a line of its own. Processes are told
    apart by machine, not by rank arithmetic."""
    import os
    import socket
    import subprocess
    import sys
    import types

    from common.errors import ProcessError, UserError
    from common.train import heartbeat

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # collected: its pid names no process
    here, alive = socket.gethostname(), os.getpid()
    who = {0: f"{here} (rank 0, pid {gone.pid})", 1: f"{here} (rank 1, pid {alive})",
           2: f"{here} (rank 2, pid {alive})", 3: f"{here}-2 (rank 3, pid {alive})",
           4: f"{here}-2 (rank 4, pid {gone.pid})"}
    store = types.SimpleNamespace(get=lambda key: who[int(key.rsplit("/", 1)[1])].encode())
    monkeypatch.setattr(heartbeat, "_heartbeat", types.SimpleNamespace(store=store))
    monkeypatch.setattr(heartbeat, "GONE_WITHIN_S", 0.1)
    reset = RuntimeError("[gloo] Read error [127.0.0.1]:4120: Connection reset by peer")
    # rank 2: rank 1 is there to say it; rank 0 is a main process, which says it anyway; rank 5 on
    # the second machine, whose ranks 3 (alive there, here a pid of ours) and 4 come before it
    for rank, local, says in ((1, 1, True), (2, 2, False), (0, 0, False), (5, 1, False)):
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("LOCAL_RANK", str(local))
        lost = heartbeat.lost_peers(reset, 5)
        assert isinstance(lost, UserError) and isinstance(lost, ProcessError) is says, rank
    who[0] = f"{here} (rank 0, pid {os.getppid()})"  # the main process is alive: it says it
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not isinstance(heartbeat.lost_peers(reset, 5), ProcessError)
