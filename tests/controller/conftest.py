"""Fixtures shared by the controller-side tests.

* ``gates`` (from tests/conftest.py): barriers that engine code waits at
  until the test opens them.
* ``log_events``: every twisted.logger event emitted during the test.
* ``controller4``: a ControllerService with four in-process engines (ids 0-3).
* ``script``: writes a Python file and returns its path.
* ``make_sme`` / ``sme`` and ``make_me`` / ``me``: the multi-engine under
  test, two-phase (IFullSynchronousMultiEngine) or plain (IFullMultiEngine),
  parametrized over two modes: ``local`` (the in-process adapters of a
  ControllerService, tier 1) and ``foolscap`` (a client of a controller
  listening on 127.0.0.1, every engine an in-process EngineService with its
  own Tub, tier 2), and ``lane`` (the same with lanes: the client's and the
  engines' calls go on them, tier 2).  Over Foolscap both are the same client object: its
  methods with the default ``block=True`` behave as IFullMultiEngine's.
"""
import pytest
import pytest_twisted
from twisted.logger import globalLogPublisher

from ipkernel.interfaces.multiengine import IFullMultiEngine, IFullSynchronousMultiEngine


@pytest.fixture
def log_events():
    """The list of twisted.logger events published while the test runs."""
    events = []
    observer = events.append
    globalLogPublisher.addObserver(observer)
    yield events
    globalLogPublisher.removeObserver(observer)


@pytest.fixture
def controller4(make_controller):
    """A ControllerService with four in-process engines, ids 0, 1, 2, 3."""
    return make_controller(4)


@pytest.fixture
def script(tmp_path):
    """``script(text) -> path`` of a new Python file holding ``text``."""
    counter = iter(range(1000))

    def write(text):
        path = tmp_path / f"script_{next(counter)}.py"
        path.write_text(text)
        return str(path)

    return write


MODES = [pytest.param("local", marks=pytest.mark.tier1),
         pytest.param("foolscap", marks=pytest.mark.tier2),
         pytest.param("lane", marks=pytest.mark.tier2)]


@pytest.fixture(params=MODES)
def multiengine_mode(request):
    """``'local'``, ``'foolscap'`` or ``'lane'`` (Foolscap with lanes, as
    ipcontroller runs): how the multi-engine under test is reached."""
    return request.param


def _factory(mode, make_controller, make_fc_cluster, adapt):
    async def make(n=4, **controller_kwargs):
        if mode == "local":
            return adapt(make_controller(n, **controller_kwargs))
        cluster = await make_fc_cluster(n, lane=(mode == "lane"), **controller_kwargs)
        make.clusters.append(cluster)
        return cluster.client

    make.mode = mode
    make.clusters = []
    return make


@pytest.fixture
def make_sme(multiengine_mode, make_controller, make_fc_cluster):
    """``async make(n=4, **controller_kwargs)`` -> an IFullSynchronousMultiEngine
    over ``n`` engines (ids 0..n-1)."""
    return _factory(multiengine_mode, make_controller, make_fc_cluster,
                    lambda c: IFullSynchronousMultiEngine(IFullMultiEngine(c)))


@pytest.fixture
def make_me(multiengine_mode, make_controller, make_fc_cluster):
    """``async make(n=4, **controller_kwargs)`` -> an IFullMultiEngine (a
    two-phase client used with ``block=True`` in foolscap mode)."""
    return _factory(multiengine_mode, make_controller, make_fc_cluster, IFullMultiEngine)


@pytest_twisted.async_fixture
async def sme(make_sme):
    """The two-phase multi-engine over four engines, ids 0-3."""
    return await make_sme(4)


@pytest_twisted.async_fixture
async def me(make_me):
    """The plain multi-engine over four engines, ids 0-3."""
    return await make_me(4)
