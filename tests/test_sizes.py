"""Tier 1: ipkernel.sizes -- the estimate the byte budgets count, and size options."""
import argparse

import pytest
from twisted.python.failure import Failure

from ipkernel import sizes, wire
from ipkernel.datachannel import refs
from ipkernel.serialize import Serialized, serialize

pytestmark = pytest.mark.tier1


def test_strings_and_bytes_count_their_payload():
    assert 1_000_000 <= sizes.estimate("a" * 1_000_000) < 1_000_200
    assert 1_000_000 <= sizes.estimate(b"a" * 1_000_000) < 1_000_200
    assert sizes.estimate("\U0001F600" * 1000) >= 4000


def test_containers_add_up_what_they_hold():
    one = sizes.estimate("x" * 10_000)
    assert sizes.estimate({"stdout": "x" * 10_000, "stderr": "x" * 10_000}) >= 2 * one
    assert sizes.estimate(["x" * 10_000] * 3) >= 3 * one
    assert sizes.estimate(("x" * 10_000, None, 5)) >= one


def test_serialized_values_count_their_frames_also_as_references():
    value = serialize(b"q" * 500_000)
    assert sizes.estimate(value) >= 500_000
    ref = Serialized([], value.type_descriptor,
                     {refs.REF_KEY: ["00" * 16, [500_000]]})
    assert refs.nbytes(ref) == 500_000
    assert sizes.estimate([ref]) >= 500_000


def test_failures_and_error_records_count_their_text():
    record = wire.ErrorRecord("ValueError", "v" * 50_000, traceback="t" * 50_000)
    assert sizes.estimate(record) >= 100_000
    assert sizes.estimate(Failure(ValueError("w" * 20_000))) >= 20_000
    assert sizes.estimate(object()) == sizes.OBJECT_COST


def test_deep_nesting_is_bounded():
    value = []
    for _ in range(1000):
        value = [value]
    assert sizes.estimate(value) < 1000 * sizes.OBJECT_COST


@pytest.mark.parametrize("text,expected", [
    ("1000", 1000), ("64K", 64 << 10), ("64M", 64 << 20), ("8MiB", 8 << 20), ("1g", 1 << 30),
    ("2GB", 2 << 30), (" 3 m ", 3 << 20)])
def test_parse_size(text, expected):
    assert sizes.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "big", "1.5G", "-1M", "10X"])
def test_parse_size_names_what_is_wrong(text):
    with pytest.raises(ValueError, match="is not a size"):
        sizes.parse_size(text)


def test_option_size_refuses_zero_with_a_message():
    with pytest.raises(argparse.ArgumentTypeError, match="at least 1 byte"):
        sizes.option_size("0")
    assert sizes.option_size("8M") == 8 << 20


def test_format_size():
    assert sizes.format_size(64 << 20) == "64 MiB"
    assert sizes.format_size(3 << 29) == "1.5 GiB"
    assert sizes.format_size(512) == "512 bytes"


def test_ipcontroller_budget_options(capsys):
    from ipkernel.controller.app import build_parser

    options = build_parser().parse_args(["--history-bytes", "8M", "--unfetched-bytes", "1G",
                                         "--unfetched-total", "2G", "--result-ttl", "30"])
    assert (options.history_bytes, options.unfetched_bytes, options.unfetched_total,
            options.result_ttl) == (8 << 20, 1 << 30, 2 << 30, 30.0)
    defaults = build_parser().parse_args([])
    assert (defaults.history_bytes, defaults.unfetched_bytes, defaults.result_ttl) == (
        64 << 20, 1 << 30, 600.0)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--history-bytes", "lots"])
    err = capsys.readouterr().err
    assert "--history-bytes" in err and "'lots' is not a size" in err
