"""The learner on CUDA: the same updates as on the CPU, the copy stream, the packed
observations gathered on the device. Skipped where no GPU is (CI); run on the GPU
machine with the rest of the suite (the learner's ``--device auto`` then picks CUDA for
every real-process test too)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from core import algos
from core.acting import build_acting
from core.batch import Batch
from core.envs import describe
from learner.trainer import Trainer, TrainerConfig
from protocol.rollout import Rollout
from protocol.spec import RunSpec

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

CATCH = "zmq_a3c/Catch-v0"


def catch_rollouts(count: int = 2):
    spec = RunSpec(
        env_id=CATCH, algo="a2c", num_envs=4, rollout_len=12, encoder="cnn", **describe(CATCH)
    )
    acting = build_acting(spec, num_envs=4, seed=5, temperature=1.0)
    try:
        collected = [acting.collect() for _ in range(count)]
    finally:
        acting.close()
    return spec, [Rollout.from_arrays(r.wire_arrays(spec)) for r in collected], collected


def test_packed_observations_gather_on_the_gpu():
    _, received, collected = catch_rollouts()
    batch = Batch.from_rollouts(received, torch.device("cuda"))
    assert batch.obs.is_cuda
    whole = np.concatenate([r.obs for r in collected], axis=1)
    assert np.array_equal(batch.obs.cpu().numpy(), whole)


def test_an_update_on_cuda_matches_the_cpu():
    spec, received, _ = catch_rollouts()
    algo = algos.get("a2c")
    cfg = algo.make_config({"entropy_coef": 0.01})
    cpu = Trainer(spec, algo, cfg, TrainerConfig(lr=1e-3, seed=3), torch.device("cpu"))
    gpu = Trainer(spec, algo, cfg, TrainerConfig(lr=1e-3, seed=3), torch.device("cuda"))
    gpu.model.load_state_dict(cpu.model.state_dict())
    a = cpu.train_on(received)
    # The GPU path: prepared on the copy stream, trained on the default one.
    b = gpu.train_batch(gpu.prepare(received))
    assert a.applied and b.applied and b.version == 1
    assert b.policy_loss == pytest.approx(a.policy_loss, rel=1e-3, abs=1e-5)
    assert b.value_loss == pytest.approx(a.value_loss, rel=1e-3, abs=1e-5)
    for (name, p), q in zip(cpu.model.named_parameters(), gpu.model.parameters(), strict=True):
        torch.testing.assert_close(q.detach().cpu(), p.detach(), rtol=1e-3, atol=1e-4, msg=name)
    weights = gpu.weights()
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 for w in weights.values())
