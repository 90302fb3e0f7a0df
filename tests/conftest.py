"""Shared test set-up: the repository root on ``sys.path`` and one sample of every
message type (used by the codec round-trip and fuzz tests)."""

from __future__ import annotations

import sys
from pathlib import Path

# The packages are not installed into the venv; make `import protocol` work from any
# working directory. (`pythonpath = ["."]` under [tool.pytest.ini_options] would do the same.)
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import logging  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import structlog  # noqa: E402

from protocol import messages as m  # noqa: E402
from protocol.spec import RunSpec  # noqa: E402

CARTPOLE = RunSpec(
    env_id="CartPole-v1",
    algo="a2c",
    coordination="sync",
    num_envs=3,
    rollout_len=5,
    obs_shape=(4,),
    action_kind="discrete",
    action_n=2,
)

# A continuous-action run (Box actions), for tests of the Gaussian head and its users.
PENDULUM = RunSpec(
    env_id="Pendulum-v1",
    algo="a2c",
    coordination="sync",
    num_envs=3,
    rollout_len=5,
    obs_shape=(3,),
    action_kind="box",
    action_n=0,
    action_shape=(1,),
    action_low=(-2.0,),
    action_high=(2.0,),
    model={"hidden": [8, 8]},
)


def experience_arrays(spec: RunSpec, num_envs: int, seed: int = 0) -> dict[str, np.ndarray]:
    """A valid discrete rollout for ``spec``: one finished episode, one autoreset step."""
    rng = np.random.default_rng(seed)
    t, n = spec.rollout_len, num_envs
    terminated = np.zeros((t, n), dtype=bool)
    truncated = np.zeros((t, n), dtype=bool)
    valid = np.ones((t, n), dtype=bool)
    terminated[1, 0] = True
    valid[2, 0] = False  # the reset after that end: no reward, not a transition
    rewards = np.ones((t, n), dtype="<f4")
    rewards[2, 0] = 0.0
    return {
        "obs": rng.standard_normal((t + 1, n, *spec.obs_shape)).astype("<f4"),
        "actions": rng.integers(0, spec.action_n, size=(t, n)).astype("<i8"),
        "logp": np.full((t, n), -np.log(spec.action_n), dtype="<f4"),
        "rewards": rewards,
        "terminated": terminated,
        "truncated": truncated,
        "valid": valid,
        "ep_returns": np.array([2.0], dtype="<f8"),
        "ep_lengths": np.array([2], dtype="<i8"),
    }


def sample_message_list() -> list[m.Message]:
    """One representative instance of every type in ``MESSAGE_TYPES``."""
    ids = {"actor_id": "actor-7", "incarnation": "c0ffee"}
    episodes = {
        "ep_returns": np.array([21.5, -3.0], dtype="<f8"),
        "ep_lengths": np.array([22, 9], dtype="<i8"),
    }
    return [
        m.Hello(**ids, hostname="node-1", pid=4242, num_envs=8, temperature=1.5),
        m.Welcome(
            learner_id="L1",
            run=CARTPOLE.to_dict(),
            pub_port=5556,
            temperature=0.25,
            seed=123456789,
        ),
        m.Weights(
            learner_id="L1",
            version=17,
            arrays={
                "policy.0.weight": np.arange(12, dtype="<f4").reshape(3, 4),
                "policy.0.bias": np.zeros(3, dtype="<f4"),
            },
        ),
        m.Experience(
            **ids,
            seq=3,
            learner_id="L1",
            policy_version=16,
            arrays=experience_arrays(CARTPOLE, CARTPOLE.num_envs),
        ),
        m.Gradient(
            **ids,
            seq=4,
            learner_id="L1",
            policy_version=16,
            env_steps=15,
            policy_loss=-0.125,
            value_loss=2.5,
            entropy=0.69,
            arrays={"grad/value.0.bias": np.ones(5, dtype="<f4"), **episodes},
        ),
        m.Heartbeat(**ids, seq=99, policy_version=16, backpressure=2),
        m.WeightsRequest(**ids, have_version=-1),
        m.Pong(learner_id="L1", version=17, held=[3, 4]),
        m.Ack(learner_id="L1", seq=3, version=17, trained=True),
        m.Bye(**ids, reason="sigterm"),
        m.Shutdown(learner_id="L1", reason="target reached"),
        m.Error(code="schema_version", detail="expected 1", fatal=True),
    ]


@pytest.fixture(scope="session")
def sample_messages() -> list[m.Message]:
    return sample_message_list()


@pytest.fixture(scope="session")
def cartpole_spec() -> RunSpec:
    return CARTPOLE


@pytest.fixture(scope="session")
def make_rollout():
    """``make_rollout(spec, num_envs, seed=0)`` -> the arrays of a valid Experience."""
    return experience_arrays


@pytest.fixture
def restore_logging():
    """For tests that call a process's ``main()`` in-process: it configures structlog
    and the root logger for the whole process; undo that afterwards."""
    yield
    structlog.reset_defaults()
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()


def small_batch(rewards: float):
    """A [4, 2] batch of a 3-vector, 2-action env, every reward ``rewards``."""
    import torch

    from core.batch import Batch
    from protocol.rollout import Rollout

    t, n = 4, 2
    rng = np.random.default_rng(0)
    r = Rollout(
        obs=rng.standard_normal((t + 1, n, 3)).astype(np.float32),
        actions=rng.integers(0, 2, (t, n)),
        logp=np.full((t, n), -np.log(2), np.float32),
        rewards=np.full((t, n), rewards, np.float32),
        terminated=np.zeros((t, n), bool),
        truncated=np.zeros((t, n), bool),
        valid=np.ones((t, n), bool),
        ep_returns=np.zeros(0),
        ep_lengths=np.zeros(0, np.int64),
    )
    return Batch.from_rollouts([r], torch.device("cpu"))


@pytest.fixture
def net():
    """Two hosts: network namespaces joined by a veth pair (tests/netns.py), deleted
    after the test whatever happened."""
    from tests.netns import two_hosts

    with two_hosts() as hosts:
        yield hosts
