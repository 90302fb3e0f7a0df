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
        env_id=CATCH,
        algo="a2c",
        num_envs=4,
        rollout_len=12,
        model={"encoder": "cnn"},
        **describe(CATCH),
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


def test_the_loss_and_its_gradient_on_cuda_match_the_cpu():
    """Same weights, same batch: the same loss and gradient within TF32's precision
    (cuDNN convolutions use TF32 by default). Parameters after an Adam step are not
    compared: Adam's first step is lr * sign(g), so a tiny gradient whose sign rounding
    flips moves by 2 lr."""
    spec, received, _ = catch_rollouts()
    algo = algos.get("a2c")
    cfg = algo.make_config({"entropy_coef": 0.01})
    cpu = Trainer(spec, algo, cfg, TrainerConfig(lr=1e-3, seed=3), torch.device("cpu"))
    gpu = Trainer(spec, algo, cfg, TrainerConfig(lr=1e-3, seed=3), torch.device("cuda"))
    gpu.model.load_state_dict(cpu.model.state_dict())
    grads = []
    for trainer in (cpu, gpu):
        terms = algo.loss(trainer.model, trainer.prepare(received), cfg)
        trainer.model.zero_grad()
        terms.total.backward()
        grads.append(torch.cat([p.grad.flatten().cpu() for p in trainer.model.parameters()]))
        grads.append(float(terms.total))
    g_cpu, loss_cpu, g_gpu, loss_gpu = grads
    assert loss_gpu == pytest.approx(loss_cpu, rel=1e-2, abs=1e-4)
    assert torch.linalg.vector_norm(g_gpu - g_cpu) <= 2e-2 * torch.linalg.vector_norm(g_cpu)


def test_an_update_through_the_copy_stream_applies_and_publishes():
    spec, received, _ = catch_rollouts()
    algo = algos.get("a2c")
    gpu = Trainer(spec, algo, algo.make_config(), TrainerConfig(lr=1e-3), torch.device("cuda"))
    before = {k: v.copy() for k, v in gpu.weights().items()}
    result = gpu.train_batch(gpu.prepare(received))  # prepared on the copy stream
    assert result.applied and result.version == 1 and np.isfinite(result.grad_norm)
    after = gpu.weights()
    assert all(isinstance(w, np.ndarray) and w.dtype == np.float32 for w in after.values())
    assert any(not np.array_equal(before[k], after[k]) for k in after)
