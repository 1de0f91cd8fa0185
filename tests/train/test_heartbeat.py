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
