"""Naming the processes that went silent when a collective times out (common/train/heartbeat.py)."""
from common.train.heartbeat import lost_peers


def test_a_collective_that_timed_out_is_one_line():
    message = str(lost_peers(RuntimeError("[gloo] Timed out waiting 5000ms for recv operation"), 5))
    assert "stopped answering for 5 s" in message and "--resume" in message
    other = RuntimeError("something else")
    assert lost_peers(other, 5) is other
