"""actor/credit.py: in-flight accounting and the sync release, driven without sockets."""

from __future__ import annotations

from actor.credit import Credit


def test_ack_returns_credit_and_names_the_release_version():
    c = Credit()
    assert not c.waiting_for_release(), "nothing sent yet"
    c.sent(1, version=3, now=0.0)
    assert c.in_flight == 1 and c.waiting_for_release()
    c.acked(1, version=4)
    assert c.in_flight == 0 and not c.waiting_for_release() and c.release_version == 4


def test_an_ack_of_an_older_rollout_does_not_release_the_last_one():
    c = Credit()
    c.sent(1, 3, 0.0)
    c.sent(2, 3, 0.1)
    c.acked(1, 4)
    assert c.in_flight == 1 and c.waiting_for_release() and c.release_version is None


def test_a_newer_pong_stands_in_for_a_lost_ack_but_an_equal_one_does_not():
    c = Credit()
    c.sent(1, version=3, now=0.0)
    c.pong(3)  # the barrier has not moved: keep waiting
    assert c.waiting_for_release()
    c.pong(5)
    assert not c.waiting_for_release() and c.release_version == 5 and c.in_flight == 0


def test_expiry_returns_credit_without_naming_a_release():
    c = Credit()
    c.sent(1, 3, now=0.0)
    c.sent(2, 3, now=4.0)
    assert c.expire(now=5.0, limit_s=2.0) == [1]
    assert c.in_flight == 1
    assert c.expire(now=10.0, limit_s=2.0) == [2]
    assert not c.waiting_for_release() and c.release_version is None


def test_reset_forgets_the_old_learners_state():
    c = Credit()
    c.sent(1, 3, 0.0)
    c.pong(9)
    c.reset()
    assert c.in_flight == 0 and c.learner_version == -1 and not c.waiting_for_release()
