"""Shared fixtures for every tier.

* ``clean_reactor`` (autouse): fails a test that leaves delayed calls behind.
* ``make_engine``: builds in-process EngineServices and stops them (and their
  user-code threads) after the test.
* ``make_controller``: a ControllerService with ``n`` in-process queued engines.
"""
import sys

import pytest
import pytest_twisted
from twisted.internet import defer, reactor

from ipkernel.controller import ControllerService
from ipkernel.engine import EngineService, QueuedEngine

STOP_TIMEOUT = 10


def _leftover_delayed_calls():
    return [dc for dc in reactor.getDelayedCalls()
            if dc.active() and not getattr(dc.func, "__module__", "").startswith("pytest_twisted")]


@pytest_twisted.async_yield_fixture(autouse=True)
async def clean_reactor():
    """Fail the test if it leaves active delayed calls in the reactor."""
    yield
    # give calls scheduled for "now" (callLater(0)) a chance to run
    for _ in range(3):
        d = defer.Deferred()
        reactor.callLater(0, d.callback, None)
        await d
    leftovers = _leftover_delayed_calls()
    for dc in leftovers:
        dc.cancel()
    assert not leftovers, f"test left delayed calls behind: {leftovers!r}"


@pytest_twisted.async_yield_fixture
async def make_engine():
    """Return ``make(**kwargs) -> EngineService``; every engine made is stopped afterwards."""
    engines = []

    def make(**kwargs):
        engine = EngineService(**kwargs)
        engine.startService()
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        if engine.running:
            await engine.stopService().addTimeout(STOP_TIMEOUT, reactor)


@pytest_twisted.async_yield_fixture
async def make_controller(make_engine):
    """Return ``make(n=0, **controller_kwargs) -> ControllerService`` with ``n``
    in-process engines registered (ids 0..n-1)."""

    def make(n=0, **kwargs):
        controller = ControllerService(**kwargs)
        for _ in range(n):
            controller.register_engine(QueuedEngine(make_engine()))
        return controller

    yield make


def pytest_configure(config):
    # The repository root must never be importable as a package root: the
    # top-level interfaces/ folder is only ever ipkernel.interfaces.
    root = str(config.rootpath)
    sys.path[:] = [p for p in sys.path if p not in ("", ".", root)]
