"""Tier 1: the engine's one-shot timerfd (arm, disarm, drain)."""
import select

import pytest

from ipkernel.engine.timerfd import make_timer


@pytest.fixture
def timer():
    timer = make_timer()
    if timer is None:
        pytest.fail("timerfd is missing on this Linux machine")
    yield timer
    timer.close()


def fired(timer, within):
    poller = select.poll()
    poller.register(timer.fd, select.POLLIN)
    return bool(poller.poll(within * 1000))


def test_an_armed_timer_fires_and_drain_forgets_the_expiry(timer):
    timer.arm(0.001)
    assert fired(timer, 5)
    timer.drain()
    assert not fired(timer, 0.05)


def test_a_disarmed_timer_does_not_fire(timer):
    timer.arm(0.05)
    timer.disarm()
    assert not fired(timer, 0.2)


def test_arming_again_with_another_delay_takes_the_new_one(timer):
    timer.arm(30)
    timer.arm(0.001)  # sooner: the spec made for 30 s must not be reused
    assert fired(timer, 5)
    timer.drain()
    timer.arm(30)
    assert not fired(timer, 0.05)
    timer.disarm()


def test_a_delay_of_zero_still_fires(timer):
    timer.arm(0)  # (a zero spec would disarm it)
    assert fired(timer, 5)
