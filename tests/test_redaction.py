"""Tier 1: FURL redaction, the programs' log filter and their log options (issue 12)."""
import argparse
import io

import pytest
from twisted.logger import Logger, LogLevel, LogPublisher

from ipkernel import applog
from ipkernel.client.fcmultiengine import FCFullSynchronousMultiEngineClient
from ipkernel.client.fctask import FCTaskClient
from ipkernel.fcutil import redact_furls, redacted_furl

TUBID = "o33gyjsq2t43pdktaab7s2sqix2txtnv"
SWISS = "em6n6kvvcu6ilpjboulqnoln2daxszga"
FURL = f"pb://{TUBID}@tcp:127.0.0.1:41234/{SWISS}"
SHOWN = "pb://o33gyjsq...@tcp:127.0.0.1:41234/..."


def test_a_furl_keeps_its_tubid_prefix_and_hints_only():
    assert redacted_furl(FURL) == SHOWN
    assert SWISS not in redacted_furl(FURL) and TUBID not in redacted_furl(FURL)


@pytest.mark.parametrize("hints", ["tcp:127.0.0.1:1,tcp:[::1]:2", "tcp:example.org:80", ""])
def test_every_kind_of_location_hints_is_kept(hints):
    assert redacted_furl(f"pb://{TUBID}@{hints}/{SWISS}") == f"pb://o33gyjsq...@{hints}/..."


def test_redacting_twice_changes_nothing_more():
    assert redacted_furl(redacted_furl(FURL)) == SHOWN


@pytest.mark.parametrize("text", [None, "", "/home/u/.ipkernel/security/ipcontroller-mec.furl",
                                  "pb://not-a-furl", "no furl here"])
def test_what_is_not_a_furl_is_left_alone(text):
    assert redacted_furl(text) == text


@pytest.mark.parametrize("template", [
    "lost the connection to the controller ({}) during execute",
    "<RemoteReference at 0x7f [{}]>",
    "furl={!r}",
    "'{}', \"{}\"",
    "{}\n\tTraceback: {}",
])
def test_every_furl_inside_a_text_is_redacted(template):
    text = redact_furls(template.format(FURL, FURL))
    assert SWISS not in text and TUBID not in text
    assert SHOWN in text


def test_a_short_tubid_is_shown_whole():
    assert redacted_furl("pb://x@tcp:127.0.0.1:1/y") == "pb://x@tcp:127.0.0.1:1/..."


def test_the_async_clients_reprs_hide_the_swissnum():
    for client in (FCFullSynchronousMultiEngineClient(None, furl=FURL), FCTaskClient(None, FURL)):
        for shown in (repr(client), str(client)):
            assert SWISS not in shown and SHOWN in shown
        assert client.furl == FURL   # the attribute still holds the real FURL
    assert "?" in repr(FCTaskClient(None))


# -- the programs' log observer ---------------------------------------------------------------

def logged(level, emit):
    """What an observer at ``level`` writes for the events ``emit(publisher)`` sends."""
    stream = io.StringIO()
    publisher = LogPublisher(applog.observer_for(stream, level))
    emit(publisher)
    return stream.getvalue()


def test_the_observer_redacts_furls_in_messages_and_tracebacks():
    def emit(publisher):
        log = Logger(namespace="ipkernel.test", observer=publisher)
        log.info("connecting to {furl}", furl=FURL)
        try:
            raise ValueError(f"no object at {FURL}")
        except ValueError:
            log.failure("it failed")
    text = logged(LogLevel.info, emit)
    assert SWISS not in text and TUBID not in text
    assert text.count(SHOWN) == 2   # the message and the exception in the traceback


def test_third_party_info_counts_as_debug_and_their_warnings_stay():
    def emit(publisher):
        Logger(namespace="twisted.internet.protocol.Factory", observer=publisher).info(
            "Starting factory")
        Logger(namespace="foolscap.pb.Listener", observer=publisher).warn("listener trouble")
        Logger(namespace="ipkernel.controller.app", observer=publisher).info("engine up")
        Logger(namespace="ipkernel.controller.app", observer=publisher).debug("detail")
    default = logged(LogLevel.info, emit)
    assert "engine up" in default and "listener trouble" in default
    assert "Starting factory" not in default and "detail" not in default
    verbose = logged(LogLevel.debug, emit)
    assert all(t in verbose for t in ("Starting factory", "listener trouble", "engine up", "detail"))


@pytest.mark.parametrize("flog_level, shown_at", [(23, LogLevel.debug), (30, LogLevel.warn),
                                                  (35, LogLevel.warn), (40, LogLevel.error)])
def test_bridged_foolscap_messages_map_to_levels(flog_level, shown_at):
    event = {"from-foolscap": True, "level": flog_level, "log_level": LogLevel.info,
             "log_namespace": "log_legacy"}
    assert applog.event_level(event) is shown_at


def test_quiet_hides_info_but_never_a_ready_line():
    def emit(publisher):
        log = Logger(namespace="ipkernel.engine.app", observer=publisher)
        log.info("chatter")
        log.info("ipengine ready: registered", **{applog.ALWAYS: True})
        log.warn("a warning")
    text = logged("warn", emit)
    assert "chatter" not in text
    assert "ipengine ready" in text and "a warning" in text


# -- the log options ---------------------------------------------------------------------

def parse(*args):
    parser = applog.add_arguments(argparse.ArgumentParser(prog="prog"), "prog")
    return parser.parse_args(list(args)).log_level


@pytest.mark.parametrize("args, level", [
    ((), "info"), (("-v",), "debug"), (("-vv",), "debug"), (("-q",), "warn"),
    (("-qq",), "error"), (("-qqq",), "critical"), (("-qqqq",), "critical"),
    (("--log-level", "error"), "error"), (("--log-level", "WARNING"), "warn"),
    (("--log-level", "error", "-v"), "warn"), (("-q", "--log-level", "debug"), "debug"),
    (("--verbose",), "debug"), (("--quiet",), "warn"),
], ids=repr)
def test_levels_from_the_options(args, level):
    assert parse(*args) == level


def test_level_of_gives_a_twisted_level():
    assert applog.level_of(argparse.Namespace(log_level="warn")) is LogLevel.warn
    assert applog.level_of(argparse.Namespace()) is LogLevel.info


def test_a_bad_level_is_refused(capsys):
    with pytest.raises(SystemExit) as info:
        parse("--log-level", "loud")
    assert info.value.code == 2
    assert "invalid level 'loud'" in capsys.readouterr().err


def test_version(capsys):
    import ipkernel

    with pytest.raises(SystemExit) as info:
        parse("--version")
    assert info.value.code == 0
    assert capsys.readouterr().out == f"prog (ipkernel) {ipkernel.__version__}\n"
