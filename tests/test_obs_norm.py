"""Observation normalisation shared by every actor (core/models/normalizer.py): the
merge is exact, the statistics are updated by the learner from what it trains on, travel
with the weights under their version, survive a checkpoint, and are what evaluation and
the actors' policies use."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.algos import get as get_algo
from core.evaluation import play
from core.models import ActorCritic, ModelConfig, param_shapes
from core.models.normalizer import ObsNormalizer, merge_moments
from core.policy import Policy
from learner.checkpoint import read
from learner.flags import parse
from learner.trainer import Trainer, TrainerConfig
from protocol.checks import InvalidMessage, check_weights
from protocol.messages import Weights
from protocol.rollout import Rollout
from protocol.spec import RunSpec
from scripts.procs import python_path
from tests.conftest import CARTPOLE, experience_arrays

SPEC = dataclasses.replace(CARTPOLE, model={"hidden": [8, 8], "obs_norm": True})
A2C = get_algo("a2c")


def trainer(spec: RunSpec = SPEC) -> Trainer:
    return Trainer(spec, A2C, A2C.make_config(), TrainerConfig(seed=3), torch.device("cpu"))


def test_merge_is_exact_against_the_concatenated_data():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(3.0, 2.0, size=(n, 4)) * rng.uniform(0.1, 5) for n in (1, 7, 50, 3)]
    mean = torch.zeros(4, dtype=torch.float64)
    var = torch.ones(4, dtype=torch.float64)
    count = torch.zeros((), dtype=torch.float64)
    for c in chunks:
        x = torch.from_numpy(c)
        mean, var, count = merge_moments(
            mean, var, count, x.mean(0), x.var(0, unbiased=False), len(c)
        )
    everything = np.concatenate(chunks)
    np.testing.assert_allclose(mean.numpy(), everything.mean(0), rtol=1e-12)
    np.testing.assert_allclose(var.numpy(), everything.var(0), rtol=1e-12)
    assert int(count) == len(everything)


def test_normaliser_update_matches_numpy_and_normalises():
    norm = ObsNormalizer((2, 3))
    rng = np.random.default_rng(1)
    data = [rng.normal(-4.0, 10.0, size=(n, 2, 3)).astype(np.float32) for n in (5, 40, 1)]
    for d in data:
        norm.update(torch.from_numpy(d))
    everything = np.concatenate(data)
    np.testing.assert_allclose(norm.mean.numpy(), everything.mean(0), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(norm.var.numpy(), everything.var(0), rtol=1e-4)
    out = norm(torch.from_numpy(everything)).numpy()
    np.testing.assert_allclose(out.mean(0), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(0), 1.0, rtol=1e-3)
    assert float(norm(torch.full((1, 2, 3), 1e9)).max()) == 10.0  # clipped


def test_observations_too_large_for_float32_moments_leave_the_statistics_alone():
    # One step at 1e20 would make the variance inf for good (each merge keeps it), and
    # every later Weights would fail the actors' own finiteness check.
    norm = ObsNormalizer((2,))
    norm.update(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    before = (norm.mean.clone(), norm.var.clone(), int(norm.count))
    norm.update(torch.tensor([[1e20, 0.0]]))
    assert torch.equal(norm.mean, before[0]) and torch.equal(norm.var, before[1])
    assert int(norm.count) == before[2] and torch.isfinite(norm(torch.ones(1, 2))).all()


def batch_rollout(seed: int, scale: float) -> Rollout:
    arrays = experience_arrays(SPEC, SPEC.num_envs, seed=seed)
    arrays["obs"] = (arrays["obs"] * scale + 5.0).astype("<f4")
    return Rollout.from_arrays(arrays)


def test_statistics_are_the_trained_batchs_and_travel_with_the_weights():
    t = trainer()
    r = batch_rollout(0, scale=20.0)
    result = t.train_on([r])
    assert result.applied and t.version == 1
    seen = r.obs[:-1][r.valid]  # the valid transitions' observations
    weights = t.weights()
    assert {"obs_norm.mean", "obs_norm.var"} <= weights.keys()
    assert "obs_norm.count" not in weights  # the count stays on the learner
    np.testing.assert_allclose(weights["obs_norm.mean"], seen.mean(0), rtol=1e-5)
    np.testing.assert_allclose(weights["obs_norm.var"], seen.var(0), rtol=1e-4)
    # An actor checks and loads them with the parameters, and acts as the learner would.
    actor = Policy(ModelConfig.from_spec(SPEC), seed=0)
    msg = Weights(arrays=weights, learner_id="L", version=t.version)
    check_weights(msg, param_shapes(actor.model))
    actor.load(weights, t.version)
    obs = torch.from_numpy(r.obs[0])
    torch.testing.assert_close(actor.model.policy(obs), t.model.policy(obs))
    # Weights without the statistics are not this network's.
    partial = {k: v for k, v in weights.items() if not k.startswith("obs_norm.")}
    with pytest.raises(InvalidMessage) as info:
        check_weights(Weights(arrays=partial), param_shapes(actor.model))
    assert info.value.reason == "bad_params"


def test_a_skipped_update_leaves_the_statistics_alone():
    t = trainer()
    t.train_on([batch_rollout(0, scale=1.0)])
    before = {k: v.copy() for k, v in t.weights().items()}
    r = batch_rollout(1, scale=1.0)
    r.rewards[:] = np.nan  # a non-finite loss: the update is skipped
    assert not t.train_on([r]).applied
    after = t.weights()
    for k in ("obs_norm.mean", "obs_norm.var"):
        np.testing.assert_array_equal(before[k], after[k])


def test_statistics_and_count_survive_a_checkpoint_round_trip():
    t = trainer()
    for seed in range(3):
        t.train_on([batch_rollout(seed, scale=3.0)])
    buf = io.BytesIO()
    torch.save({"trainer": t.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    again = trainer()
    again.load_state_dict(state["trainer"])
    for name in ("mean", "var", "count"):
        torch.testing.assert_close(
            getattr(again.model.obs_norm, name), getattr(t.model.obs_norm, name)
        )
    assert float(again.model.obs_norm.count) == 3 * (SPEC.rollout_len * SPEC.num_envs - 1)


def test_evaluation_plays_with_the_statistics():
    t = trainer(dataclasses.replace(SPEC, model={**SPEC.model, "hidden": [16]}))
    t.train_on([batch_rollout(0, scale=2.0)])
    played = play(t.spec, t.weights(), episodes=2, seed=0)
    assert played.complete and len(played.returns) == 2


def test_obs_norm_is_refused_where_it_cannot_work(capsys):
    with pytest.raises(SystemExit):
        parse(["--obs-norm", "--algo", "a3c-grad"])
    assert "gradients only" in capsys.readouterr().err
    images = dataclasses.replace(SPEC, obs_dtype="|u1", obs_shape=(4, 40, 40), frame_stack=4)
    with pytest.raises(ValueError, match="vector observations"):
        ModelConfig.from_spec(images)
    with pytest.raises(ValueError, match="vector observations"):
        ActorCritic(ModelConfig(obs_shape=(4, 40, 40), action_kind="discrete", action_n=2,
                                obs_dtype="|u1", encoder="cnn", obs_norm=True))  # fmt: skip


@pytest.mark.slow
def test_a_run_with_obs_norm_trains_and_checkpoints_the_statistics(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "learner", "--obs-norm", "--max-env-steps", "20000",
         "--run-dir", str(tmp_path)],
        check=True, cwd=python_path(), capture_output=True, timeout=300,
    )  # fmt: skip
    events = [json.loads(line) for line in (tmp_path / "learner.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "message_rejected"]
    assert json.loads((tmp_path / "summary.json").read_text())["updates"] > 0
    assert json.loads((tmp_path / "config.json").read_text())["spec"]["model"]["obs_norm"] is True
    state = read(sorted((tmp_path / "checkpoints").glob("ckpt-*.pt"))[-1])
    model = state["trainer"]["model"]
    assert float(model["obs_norm.count"]) >= 10_000  # what it trained on, not more
    assert float(model["obs_norm.count"]) <= state["counters"]["env_steps"]
    assert (model["obs_norm.var"] != 1.0).all()


def test_the_first_batch_is_trained_on_its_own_normalised_observations():
    """The statistics start at mean 0, variance 1; the first update must not fit the
    network to raw observations (with mean 5 and std 20 here): they are seeded from the
    first batch before its update, and that batch is not merged a second time."""
    t = trainer()
    r = batch_rollout(0, scale=20.0)
    seen_inputs = []
    handle = t.model.obs_norm.register_forward_hook(lambda m, i, out: seen_inputs.append(out))
    try:
        assert t.train_on([r]).applied
    finally:
        handle.remove()
    valid_obs = torch.from_numpy(r.obs[:-1][r.valid])
    # What the loss saw: the batch's observations normalised by their own moments.
    first = seen_inputs[0][:-1][torch.from_numpy(r.valid)]  # [valid transitions, 4]
    assert abs(float(first.mean())) < 0.2 and 0.7 < float(first.std()) < 1.3
    # Taken in once: the running statistics are exactly the batch's moments.
    np.testing.assert_allclose(t.model.obs_norm.mean.numpy(), valid_obs.mean(0), rtol=1e-5)
    assert int(t.model.obs_norm.count) == len(valid_obs)
    # The second batch is merged after its update, as before.
    t.train_on([batch_rollout(1, scale=20.0)])
    assert int(t.model.obs_norm.count) == 2 * len(valid_obs)


def test_a_skipped_first_update_gives_the_seeded_statistics_back():
    t = trainer()
    r = batch_rollout(0, scale=20.0)
    r.rewards[:] = np.nan  # a non-finite loss: the update is skipped
    assert not t.train_on([r]).applied
    assert int(t.model.obs_norm.count) == 0
    np.testing.assert_array_equal(t.model.obs_norm.mean.numpy(), np.zeros(4, np.float32))
