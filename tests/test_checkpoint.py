"""Checkpointer against real torch models and optimizers, in a tmp dir."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from learner.checkpoint import (
    FORMAT_VERSION,
    CheckpointConfig,
    Checkpointer,
    UnreadableCheckpoint,
    rng_state_from_plain,
    rng_state_to_plain,
)
from tests.fakes import RecordingLog


def _trained_state(step_seed: int = 0) -> tuple[nn.Module, torch.optim.Optimizer, dict]:
    torch.manual_seed(step_seed)
    model = nn.Linear(4, 2)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model(torch.randn(8, 4)).pow(2).mean().backward()  # [8, 2]
    opt.step()
    rng = np.random.default_rng(step_seed)
    rng.random(5)
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "counters": {"env_steps": 1234, "updates": 7, "episodes": 3, "policy_version": 7},
        "torch_rng": torch.get_rng_state(),
        "numpy_rng": rng.bit_generator.state,
        "episode_returns": [1.0, 22.5, 500.0],
        "config": {
            "env_id": "CartPole-v1",
            "lr": 1e-2,
            "num_envs": 8,
            "normalize": True,
            "hidden": [64, 64],
        },
    }
    return model, opt, state


def _ckpt(tmp_path: Path, keep: int = 3) -> Checkpointer:
    return Checkpointer(CheckpointConfig(tmp_path / "ckpt", keep=keep))


def _tensors(obj):
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _tensors(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _tensors(v)


def test_round_trip_restores_model_optimizer_counters_and_rngs(tmp_path):
    model, opt, state = _trained_state()
    ckpt = _ckpt(tmp_path)
    path = ckpt.save(state, step=1234)
    assert path.name == "ckpt-000000001234.pt"
    expect_torch = torch.rand(5)
    g = np.random.default_rng()
    g.bit_generator.state = state["numpy_rng"]
    expect_np = g.random(5)

    loaded_path, got = ckpt.load_latest()
    assert loaded_path == path
    assert got["format_version"] == FORMAT_VERSION == 2
    assert all(t.device.type == "cpu" for t in _tensors(got))

    model2 = nn.Linear(4, 2)
    model2.load_state_dict(got["model"])
    for a, b in zip(model.parameters(), model2.parameters(), strict=True):
        assert torch.equal(a, b)
    opt2 = torch.optim.Adam(model2.parameters(), lr=1e-2)
    opt2.load_state_dict(got["optimizer"])
    for s1, s2 in zip(opt.state.values(), opt2.state.values(), strict=True):
        for k in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(s1[k], s2[k])
    assert got["counters"] == state["counters"]
    assert got["episode_returns"] == state["episode_returns"]
    assert got["config"] == state["config"]

    torch.set_rng_state(got["torch_rng"])
    assert torch.equal(torch.rand(5), expect_torch)
    g2 = np.random.default_rng()
    g2.bit_generator.state = got["numpy_rng"]
    np.testing.assert_array_equal(g2.random(5), expect_np)


@pytest.mark.parametrize(
    "bitgen",
    [np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox, np.random.SFC64],
)
def test_every_numpy_bit_generator_state_round_trips(tmp_path, bitgen):
    # PCG64 state holds 128-bit Python ints; the others hold ndarrays that weights_only refuses.
    g = np.random.Generator(bitgen(2**100 + 7))
    g.random(3)
    ckpt = _ckpt(tmp_path)
    ckpt.save({"numpy_rng": g.bit_generator.state}, step=1)
    expected = g.random(10)
    _, got = ckpt.load_latest()
    g2 = np.random.Generator(bitgen())
    g2.bit_generator.state = got["numpy_rng"]
    np.testing.assert_array_equal(g2.random(10), expected)


def test_rng_plain_helpers_are_inverse_and_leave_pcg64_unchanged():
    pcg = np.random.default_rng(1).bit_generator.state
    assert rng_state_to_plain(pcg) == pcg
    mt = np.random.MT19937(1).state
    back = rng_state_from_plain(rng_state_to_plain(mt))
    np.testing.assert_array_equal(back["state"]["key"], mt["state"]["key"])
    assert back["state"]["key"].dtype == np.uint32
    with pytest.raises(ValueError, match="integer dtype"):
        rng_state_from_plain({"__ndarray__": "|O", "data": [1]})


def test_keep_k_prunes_all_but_newest(tmp_path):
    ckpt = _ckpt(tmp_path, keep=2)
    for step in (10, 20, 30, 40):
        ckpt.save({"counters": {"env_steps": step}}, step=step)
    assert [p.name for p in ckpt.list()] == ["ckpt-000000000040.pt", "ckpt-000000000030.pt"]
    assert ckpt.load_latest()[1]["counters"]["env_steps"] == 40


def test_save_never_prunes_the_checkpoint_just_written(tmp_path):
    # Resumed from an older checkpoint after the newest was unreadable: step goes back.
    ckpt = _ckpt(tmp_path, keep=1)
    ckpt.save({}, step=100)
    path = ckpt.save({}, step=50)
    assert ckpt.list() == [path]


def test_list_orders_by_step_beyond_twelve_digits(tmp_path):
    ckpt = _ckpt(tmp_path, keep=5)
    ckpt.save({}, step=999_999_999_999)
    big = ckpt.save({}, step=10**12)
    assert ckpt.list()[0] == big


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_newest_falls_back_to_previous_and_reports_it(tmp_path, damage):
    ckpt = _ckpt(tmp_path)
    ckpt.save({"counters": {"env_steps": 1}}, step=1)
    newest = ckpt.save({"counters": {"env_steps": 2}}, step=2)
    data = newest.read_bytes()
    newest.write_bytes(data[: len(data) // 2] if damage == "truncate" else os.urandom(len(data)))

    log = RecordingLog()
    path, state = ckpt.load_latest(log=log)
    assert state["counters"]["env_steps"] == 1
    assert path.name == "ckpt-000000000001.pt"
    assert [(e, kw["path"]) for e, kw in log.records] == [("checkpoint_unreadable", str(newest))]
    assert log.records[0][1]["reason"]
    assert [p for p, _ in ckpt.skipped] == [newest]


@pytest.mark.parametrize(
    "payload,reason",
    [
        ([1, 2, 3], "not a dict"),
        ({"model": {}}, "missing format_version"),
        ({"format_version": 1}, "format_version is 1"),
        ({"format_version": 2, "numpy_rng": {"__ndarray__": "<f8", "data": [0.5]}}, "numpy_rng"),
    ],
)
def test_wrong_shape_or_version_is_skipped(tmp_path, payload, reason):
    ckpt = _ckpt(tmp_path)
    ckpt.save({}, step=1)
    torch.save(payload, ckpt.cfg.directory / "ckpt-000000000002.pt")
    log = RecordingLog()
    path, _ = ckpt.load_latest(log=log)
    assert path.name == "ckpt-000000000001.pt"
    assert reason in log.records[0][1]["reason"]


def _leave_mark(path: str) -> None:
    Path(path).write_text("executed")


class Exploit:
    """Unpickling this calls ``_leave_mark(marker)``: what a hostile checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (_leave_mark, (str(self.marker),))


def test_pickled_object_is_refused_not_executed(tmp_path):
    ckpt = _ckpt(tmp_path)
    ckpt.save({"counters": {"env_steps": 1}}, step=1)
    evil = ckpt.cfg.directory / "ckpt-000000000002.pt"
    marker = tmp_path / "marker"
    torch.save({"format_version": 2, "payload": Exploit(marker)}, evil)
    torch.load(evil, weights_only=False)  # the exploit is real: unrestricted loading runs it
    assert marker.exists()
    marker.unlink()

    log = RecordingLog()
    path, _ = ckpt.load_latest(log=log)
    assert path.name == "ckpt-000000000001.pt"
    assert not marker.exists()
    assert "Unsupported global" in log.records[0][1]["reason"]


@pytest.mark.parametrize(
    "make_state,match",
    [
        (lambda marker: {"payload": Exploit(marker)}, "Unsupported global"),
        (lambda marker: {"counters": {"env_steps": np.int64(3)}}, "Unsupported global"),
        (lambda marker: {"format_version": 1}, "format_version is 1"),
    ],
)
def test_save_refuses_state_that_would_not_load(tmp_path, make_state, match):
    ckpt = _ckpt(tmp_path)
    with pytest.raises(UnreadableCheckpoint, match=match):
        ckpt.save(make_state(tmp_path / "marker"), step=1)
    assert not (tmp_path / "marker").exists()
    assert list(ckpt.cfg.directory.iterdir()) == []


def test_interrupted_save_leaves_temp_that_is_ignored(tmp_path):
    ckpt = _ckpt(tmp_path)
    good = ckpt.save({}, step=1)
    (ckpt.cfg.directory / ".ckpt-2.99999.tmp").write_bytes(b"half a checkpoint")
    assert ckpt.list() == [good]
    assert ckpt.load_latest()[0] == good
    assert ckpt.skipped == []


def test_save_replaces_stale_temp_of_its_own_name(tmp_path):
    ckpt = _ckpt(tmp_path)
    stale = ckpt.cfg.directory / f".ckpt-5.{os.getpid()}.tmp"
    stale.write_bytes(b"left by a crash")
    ckpt.save({}, step=5)
    assert not stale.exists()
    assert ckpt.load_latest()[0].name == "ckpt-000000000005.pt"


def test_failed_rename_never_exposes_a_partial_file(tmp_path, monkeypatch):
    ckpt = _ckpt(tmp_path)
    prev = ckpt.save({"counters": {"env_steps": 1}}, step=1)

    def boom(src, dst):
        raise OSError("disk full during rename")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save({"counters": {"env_steps": 2}}, step=2)
    monkeypatch.undo()

    assert not (ckpt.cfg.directory / "ckpt-000000000002.pt").exists()
    assert sorted(p.name for p in ckpt.cfg.directory.iterdir()) == [prev.name]  # temp cleaned
    assert ckpt.load_latest()[1]["counters"]["env_steps"] == 1


def test_no_checkpoint_gives_none(tmp_path):
    ckpt = _ckpt(tmp_path)
    assert ckpt.list() == []
    assert ckpt.load_latest() is None
    assert ckpt.load_latest(log=RecordingLog()) is None


def test_nothing_loadable_gives_none_with_every_reason(tmp_path):
    ckpt = _ckpt(tmp_path)
    for step in (1, 2):
        ckpt.save({}, step=step).write_bytes(b"junk")
    log = RecordingLog()
    assert ckpt.load_latest(log=log) is None
    assert len(log.records) == 2


def test_config_validates_keep(tmp_path):
    with pytest.raises(ValueError, match="keep must be >= 1"):
        CheckpointConfig(tmp_path, keep=0)
    assert CheckpointConfig(str(tmp_path)).directory == tmp_path
