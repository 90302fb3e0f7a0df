"""The address file (protocol/address.py): what a learner writes once bound and an
actor started by a scheduler reads. Pure file handling, no processes."""

from __future__ import annotations

import json
import os

import pytest

from protocol import address

HERE = address.LearnerAddress(
    router="tcp://node-3:40001", pub="tcp://node-3:40002", learner_id="abc", pid=7, host="node-3"
)


def test_round_trip_and_no_temporary_file_left(tmp_path):
    path = tmp_path / "sub" / "learner.addr"
    address.write(path, HERE)
    assert address.read(path) == HERE
    assert sorted(p.name for p in path.parent.iterdir()) == ["learner.addr"]
    assert json.loads(path.read_text())["format"] == address.FORMAT


def test_missing_file_reads_as_none_not_an_error(tmp_path):
    assert address.read(tmp_path / "nothing") is None


def test_rewrite_replaces_the_whole_file(tmp_path):
    path = tmp_path / "learner.addr"
    address.write(path, HERE)
    moved = address.LearnerAddress("tcp://node-9:1", "tcp://node-9:2", "def", 8, "node-9")
    address.write(path, moved)
    assert address.read(path) == moved


def test_remove_only_removes_the_learners_own_file(tmp_path):
    path = tmp_path / "learner.addr"
    address.write(path, HERE)
    assert not address.remove(path, "someone-else")  # a newer learner wrote it
    assert path.exists()
    assert address.remove(path, "abc")
    assert not path.exists()
    assert not address.remove(path, "abc")  # already gone: nothing to do


@pytest.mark.parametrize(
    "content, says",
    [
        (b"not json", "not JSON"),
        (b"[1, 2]", "expected a JSON object"),
        (json.dumps({**HERE.to_dict(), "format": 99}).encode(), "format 99"),
        (json.dumps({k: v for k, v in HERE.to_dict().items() if k != "router"}).encode(), "router"),
        (json.dumps({**HERE.to_dict(), "router": "ipc:///tmp/x"}).encode(), "tcp://"),
        (json.dumps({**HERE.to_dict(), "pub": "node:99999"}).encode(), "HOST:PORT"),
        (b" " * (address.MAX_BYTES + 1), "larger than"),
    ],
)
def test_a_file_that_is_not_an_address_file_is_refused_with_the_reason(tmp_path, content, says):
    path = tmp_path / "learner.addr"
    path.write_bytes(content)
    with pytest.raises(address.AddressFileError, match=says):
        address.read(path)


def test_advertised_host():
    assert address.advertised_host("10.0.0.5") == "10.0.0.5"
    assert address.advertised_host("0.0.0.0", "login-1.cluster") == "login-1.cluster"
    assert address.advertised_host("0.0.0.0") == os.uname().nodename
    assert address.advertised_host("*") == os.uname().nodename
