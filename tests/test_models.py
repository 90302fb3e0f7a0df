"""The network's action heads, the actor-critic's shapes, and acting on a Box env.

The numpy sampler (what the actor uses) and the torch distribution (what the loss uses)
must give the same log-prob for the same action, or every importance ratio pi/mu in the
loss is wrong: checked for both heads, a multi-dimensional Box and temperature != 1.
"""

from __future__ import annotations

import dataclasses
import math

import gymnasium as gym
import numpy as np
import pytest
import torch

from core.acting import build_acting
from core.algos import get as get_algo
from core.batch import Batch
from core.envs import describe
from core.models import ActorCritic, ModelConfig, weights_to_arrays
from core.models.heads import CategoricalHead, GaussianHead
from core.policy import Policy
from protocol.spec import RunSpec
from tests.conftest import PENDULUM

BOX_SHAPE = (2, 3)
BOX_LOW = tuple(float(x) for x in np.linspace(-1.0, -0.5, 6))
BOX_HIGH = tuple(float(x) for x in np.linspace(0.5, 2.0, 6))
TEMPERATURES = [1.0, 0.3, 2.5]


def gaussian_head() -> GaussianHead:
    head = GaussianHead(BOX_SHAPE, BOX_LOW, BOX_HIGH)
    with torch.no_grad():  # a different std per dimension, inside the bounds
        head.log_std.copy_(torch.linspace(-1.5, 0.7, 6))
    return head


# --- numpy sampling agrees with the torch distribution ---------------------------------


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_categorical_sample_logp_equals_torch_log_prob(temperature):
    head = CategoricalHead(5)
    rng = np.random.default_rng(0)
    out = (3 * rng.standard_normal((64, 5))).astype(np.float32)  # [N, n]
    actions, logp = head.sample(out, np.random.default_rng(1), temperature)
    assert actions.shape == (64,) and actions.dtype == np.int64
    assert logp.shape == (64,) and logp.dtype == np.float32
    assert ((actions >= 0) & (actions < 5)).all()
    dist = head.distribution(torch.from_numpy(out) / temperature)
    expected = dist.log_prob(torch.from_numpy(actions)).numpy()
    np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_categorical_samples_follow_softmax_of_logits_over_temperature(temperature):
    head = CategoricalHead(4)
    logits = np.array([1.0, -0.5, 0.3, 2.0])
    n = 40_000
    out = np.tile(logits.astype(np.float32), (n, 1))  # [n, 4]: one state, n draws
    actions, _ = head.sample(out, np.random.default_rng(2), temperature)
    freq = np.bincount(actions, minlength=4) / n
    p = np.exp(logits / temperature) / np.exp(logits / temperature).sum()
    # Five standard errors of a binomial frequency: fails only on a wrong distribution.
    np.testing.assert_array_less(np.abs(freq - p), 5 * np.sqrt(p * (1 - p) / n) + 1e-12)


@pytest.mark.parametrize("temperature", TEMPERATURES)
def test_gaussian_sample_logp_equals_torch_log_prob_for_a_2x3_box(temperature):
    head = gaussian_head()
    rng = np.random.default_rng(3)
    out = rng.standard_normal((32, 6)).astype(np.float32)  # [N, act_dim]
    actions, logp = head.sample(out, np.random.default_rng(4), temperature)
    assert actions.shape == (32, *BOX_SHAPE) and actions.dtype == np.float32
    assert logp.shape == (32,) and logp.dtype == np.float32
    base = head.distribution(torch.from_numpy(out)).base_dist
    tempered = torch.distributions.Independent(
        torch.distributions.Normal(base.loc, base.scale * temperature), 1
    )
    flat = head.flat_actions(torch.from_numpy(actions)[None])  # [1, N, act_dim]
    expected = tempered.log_prob(flat)[0].detach().numpy()  # [N]
    np.testing.assert_allclose(logp, expected, rtol=1e-5, atol=1e-5)


def test_gaussian_logp_matches_the_density_written_out():
    """A slow reference from the formula, independent of torch: the sum over dimensions
    of log N(a; mu, (sigma * temperature)^2)."""
    head, temperature = gaussian_head(), 0.6
    out = np.random.default_rng(5).standard_normal((8, 6)).astype(np.float32)
    actions, logp = head.sample(out, np.random.default_rng(6), temperature)
    sigma = np.exp(np.linspace(-1.5, 0.7, 6)) * temperature
    for i in range(8):
        a = actions[i].reshape(-1).astype(np.float64)
        ref = sum(
            -0.5 * ((a[j] - out[i, j]) / sigma[j]) ** 2
            - math.log(sigma[j])
            - 0.5 * math.log(2 * math.pi)
            for j in range(6)
        )
        assert abs(logp[i] - ref) < 1e-4, (i, logp[i], ref)


def test_gaussian_samples_have_mean_out_and_std_scaled_by_temperature():
    head, temperature = gaussian_head(), 1.7
    n = 40_000
    mu = np.linspace(-1, 1, 6).astype(np.float32)
    actions, _ = head.sample(np.tile(mu, (n, 1)), np.random.default_rng(7), temperature)
    flat = actions.reshape(n, 6)
    sigma = np.exp(np.linspace(-1.5, 0.7, 6)) * temperature
    np.testing.assert_array_less(np.abs(flat.mean(axis=0) - mu), 5 * sigma / np.sqrt(n))
    np.testing.assert_allclose(flat.std(axis=0), sigma, rtol=0.03)


# --- the Gaussian head's bounds ---------------------------------------------------------


def test_gaussian_to_env_clips_into_the_bounds_and_keeps_the_shape():
    head = gaussian_head()
    low = np.array(BOX_LOW, dtype=np.float32).reshape(BOX_SHAPE)
    high = np.array(BOX_HIGH, dtype=np.float32).reshape(BOX_SHAPE)
    actions = (10 * np.random.default_rng(8).standard_normal((50, *BOX_SHAPE))).astype(np.float32)
    actions[0] = (low + high) / 2  # inside: unchanged
    env_actions = head.to_env(actions)
    assert env_actions.shape == actions.shape
    assert env_actions.dtype == np.float32
    assert (env_actions >= low).all() and (env_actions <= high).all()
    np.testing.assert_array_equal(env_actions[0], actions[0])
    expected = np.minimum(np.maximum(actions, low), high)  # per element, per dimension
    np.testing.assert_array_equal(env_actions, expected)
    assert (env_actions == low).any() and (env_actions == high).any()


@pytest.mark.parametrize("log_std, std", [(100.0, math.exp(2.0)), (-100.0, math.exp(-5.0))])
def test_log_std_is_bounded_in_the_distribution_and_in_sampling(log_std, std):
    head = gaussian_head()
    with torch.no_grad():
        head.log_std.fill_(log_std)
    out = np.zeros((4, 6), dtype=np.float32)
    scale = head.distribution(torch.from_numpy(out)).base_dist.scale
    torch.testing.assert_close(scale, torch.full((4, 6), std), rtol=1e-6, atol=0.0)
    actions, logp = head.sample(out, np.random.default_rng(9), 1.0)
    assert np.isfinite(logp).all() and np.isfinite(actions).all()
    expected = head.distribution(torch.from_numpy(out)).log_prob(
        torch.from_numpy(actions.reshape(4, 6))
    )
    np.testing.assert_allclose(logp, expected.detach().numpy(), rtol=1e-5, atol=1e-5)


# --- the actor-critic -------------------------------------------------------------------


@pytest.mark.parametrize(
    "cfg, out_dim, act_tail",
    [
        (ModelConfig(obs_shape=(3, 2), action_kind="discrete", action_n=4, hidden=(16,)), 4, ()),
        (
            ModelConfig(
                obs_shape=(5,),
                action_kind="box",
                action_shape=BOX_SHAPE,
                action_low=BOX_LOW,
                action_high=BOX_HIGH,
                hidden=(16, 8),
            ),
            6,
            BOX_SHAPE,
        ),
    ],
    ids=["discrete_obs_3x2", "box_2x3"],
)
def test_actor_critic_forward_shapes(cfg, out_dim, act_tail):
    torch.manual_seed(0)
    model = ActorCritic(cfg)
    t, n = 4, 3
    obs = torch.randn(t + 1, n, *cfg.obs_shape)  # [T+1, N, *obs_shape]
    out, values = model(obs)
    assert out.shape == (t + 1, n, out_dim)
    assert values.shape == (t + 1, n)
    torch.testing.assert_close(model.policy(obs), out)
    dist = model.distribution(out[:-1])
    sample = dist.sample()  # [T, N] or [T, N, act_dim]
    actions = sample if not act_tail else sample.reshape(t, n, *act_tail)
    logp = dist.log_prob(model.head.flat_actions(actions))
    assert logp.shape == (t, n)
    assert dist.entropy().shape == (t, n)
    # One env's values depend on its own observations only (no mixing across the batch).
    obs2 = obs.clone()
    obs2[:, 0] += 1.0
    _, values2 = model(obs2)
    torch.testing.assert_close(values2[:, 1:], values[:, 1:])
    assert not torch.allclose(values2[:, 0], values[:, 0])


# --- acting on a multi-dimensional Box env ----------------------------------------------

TINY_BOX_ID = "TinyBox2x2Test-v0"


class TinyBoxEnv(gym.Env):
    """Box(2, 2) actions in [-1, 2], a 3-vector observation; reward -|a|^2. It records
    every action it is given and raises on one outside its action space."""

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 2.0, (2, 2), np.float32)
        self.received: list[np.ndarray] = []

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return self.np_random.standard_normal(3).astype(np.float32), {}

    def step(self, action):
        action = np.asarray(action)
        if not self.action_space.contains(action):
            raise ValueError(f"action outside the space: {action!r}")
        self.received.append(action.copy())
        obs = self.np_random.standard_normal(3).astype(np.float32)
        terminated = bool(self.np_random.random() < 0.1)
        return obs, -float((action**2).sum()), terminated, False, {}


@pytest.fixture
def tiny_box_env():
    gym.register(id=TINY_BOX_ID, entry_point=TinyBoxEnv, max_episode_steps=6)
    try:
        yield TINY_BOX_ID
    finally:
        gym.registry.pop(TINY_BOX_ID, None)


def test_policy_and_collector_run_on_a_2x2_box_env(tiny_box_env):
    spec = RunSpec(
        env_id=tiny_box_env,
        algo="a2c",
        coordination="sync",
        num_envs=3,
        rollout_len=20,
        model={"hidden": [8]},
        **describe(tiny_box_env),
    )
    assert spec.action_shape == (2, 2) and spec.action_kind == "box"
    # A large temperature: many samples fall outside [-1, 2] and must be clipped.
    acting = build_acting(spec, num_envs=3, seed=11, temperature=3.0)
    try:
        rollout = acting.collect()
        received = [
            a for group in acting.envs for env in group.envs for a in env.unwrapped.received
        ]
    finally:
        acting.close()
    assert acting.collector.env_errors == 0, "every action was inside the space"
    assert rollout.actions.shape == (20, 3, 2, 2) and rollout.actions.dtype == np.float32
    assert rollout.obs.shape == (21, 3, 3)
    # The rollout keeps the unclipped sample (its log-prob is exact); the env got it clipped.
    assert (rollout.actions < -1).any() or (rollout.actions > 2).any()
    assert len(received) == rollout.transitions, "autoreset steps do not reach the env"
    assert all(a.shape == (2, 2) and (a >= -1).all() and (a <= 2).all() for a in received)
    assert rollout.terminated.any() or rollout.truncated.any(), "episodes ended in 20 steps"
    assert not rollout.valid.all(), "the autoreset steps are marked"
    # The behaviour log-probs agree with the loss's distribution at that temperature.
    model = acting.policy.model
    with torch.no_grad():
        out = model.policy(torch.from_numpy(rollout.obs[:-1]))  # [T, N, 4]
        base = model.distribution(out).base_dist
        tempered = torch.distributions.Independent(
            torch.distributions.Normal(base.loc, base.scale * 3.0), 1
        )
        expected = tempered.log_prob(model.head.flat_actions(torch.from_numpy(rollout.actions)))
    np.testing.assert_allclose(rollout.logp, expected.numpy(), rtol=1e-5, atol=1e-5)
    # And the loss runs on it.
    algo = get_algo("a2c")
    terms = algo.loss(model, Batch.from_rollouts([rollout], torch.device("cpu")), algo.config())
    assert torch.isfinite(terms.total) and terms.transitions == rollout.transitions


def test_pendulum_box_1_acts_within_bounds():
    spec = PENDULUM
    assert spec.action_shape == (1,)
    acting = build_acting(spec, num_envs=2, seed=3, temperature=1.0)
    try:
        rollout = acting.collect()
    finally:
        acting.close()
    assert rollout.actions.shape == (5, 2, 1)
    assert acting.collector.env_errors == 0
    env_actions = acting.policy.to_env(rollout.actions)
    assert (np.abs(env_actions) <= 2.0).all()


# --- random streams ---------------------------------------------------------------------


def test_gymnasium_seeds_an_env_with_default_rng_of_the_integer():
    """The premise of the next test: an env reset with seed s draws from
    np.random.default_rng(s)."""
    env = TinyBoxEnv()
    env.reset(seed=42)  # its reset draws 3 normals first
    expected = np.random.default_rng(42)
    expected.standard_normal(3)
    np.testing.assert_array_equal(env.np_random.random(5), expected.random(5))
    generator, _ = gym.utils.seeding.np_random(42)
    np.testing.assert_array_equal(generator.random(5), np.random.default_rng(42).random(5))


@pytest.mark.parametrize("seed", [0, 1, 123456789])
def test_policy_random_stream_differs_from_the_envs(seed):
    cfg = ModelConfig(obs_shape=(4,), action_kind="discrete", action_n=2, hidden=(4,))
    draws = Policy(cfg, seed=seed).rng.random(5)
    # A vector env reset with seed s seeds its envs with s, s+1, ...
    for env_seed in range(seed, seed + 4):
        assert not np.array_equal(draws, np.random.default_rng(env_seed).random(5)), env_seed
    # Still reproducible from the seed.
    np.testing.assert_array_equal(draws, Policy(cfg, seed=seed).rng.random(5))
    assert not np.array_equal(draws, Policy(cfg, seed=seed + 1).rng.random(5))


# --- found in review ------------------------------------------------------------------


def test_published_weights_do_not_alias_the_live_parameters():
    model = ActorCritic(ModelConfig(obs_shape=(4,), action_kind="discrete", action_n=2))
    arrays = weights_to_arrays(model)
    before = {k: v.copy() for k, v in arrays.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # what the next optimizer step does in place
    for k, v in arrays.items():
        np.testing.assert_array_equal(v, before[k])


def test_log_std_gradient_passes_beyond_its_bounds():
    head = GaussianHead((2,), (-1.0, -1.0), (1.0, 1.0))
    with torch.no_grad():
        head.log_std.fill_(10.0)  # far past LOG_STD_MAX
    dist = head.distribution(torch.zeros(3, 2))
    dist.entropy().sum().backward()
    assert torch.allclose(dist.base_dist.scale, torch.full((3, 2), np.exp(2.0)))
    assert head.log_std.grad is not None and (head.log_std.grad != 0).all(), (
        "a plain clamp would pin the std at its bound forever"
    )


def test_log_std_parameter_stays_inside_its_bounds_under_steady_pressure():
    # A loss that keeps pushing the std down (entropy traded away) for many steps: the
    # parameter stays at the bound, and the first push back moves it inside at once.
    head = GaussianHead((2,), (-1.0, -1.0), (1.0, 1.0))
    opt = torch.optim.SGD(head.parameters(), lr=1.0)
    for _ in range(50):
        opt.zero_grad()
        head._log_std().sum().backward()  # d/d log_std = +1: SGD lowers it by 1 a step
        opt.step()
        head.keep_in_bounds()
    assert torch.equal(head.log_std.detach(), torch.full((2,), GaussianHead.LOG_STD_MIN))
    opt.zero_grad()
    (-head._log_std().sum()).backward()
    opt.step()
    head.keep_in_bounds()
    assert (head.log_std.detach() > GaussianHead.LOG_STD_MIN).all()


def test_the_trainer_keeps_the_log_std_inside_after_every_step():
    from learner.trainer import Trainer, TrainerConfig

    spec = dataclasses.replace(PENDULUM, num_envs=2, rollout_len=3, model={"hidden": [8]})
    algo = get_algo("a2c")
    trainer = Trainer(spec, algo, algo.make_config(), TrainerConfig(), torch.device("cpu"))
    with torch.no_grad():
        trainer.model.head.log_std.fill_(7.0)  # as if it had drifted
    for p in trainer.model.parameters():
        p.grad = torch.zeros_like(p)
    assert trainer._clip_and_step() is not None
    assert torch.equal(
        trainer.model.head.log_std.detach(), torch.full((1,), GaussianHead.LOG_STD_MAX)
    )


def test_uint8_observations_are_scaled_to_unit_range_inside_the_model():
    torch.manual_seed(0)
    img = ActorCritic(
        ModelConfig(obs_shape=(3, 4), action_kind="discrete", action_n=2, obs_dtype="|u1")
    )
    flt = ActorCritic(ModelConfig(obs_shape=(3, 4), action_kind="discrete", action_n=2))
    flt.load_state_dict(img.state_dict())
    obs = torch.randint(0, 256, (5, 3, 4), dtype=torch.uint8)
    out_img, v_img = img(obs)
    out_flt, v_flt = flt(obs.float() / 255.0)
    torch.testing.assert_close(out_img, out_flt)
    torch.testing.assert_close(v_img, v_flt)


def test_the_run_specs_model_map_is_read_and_checked_by_the_model_table():
    """The network travels as one map the protocol does not interpret: the model table
    reads it, fills what is missing with its defaults, and refuses what it does not
    know with the key's name (an actor then exits with run_spec_unusable)."""
    from tests.conftest import CARTPOLE

    spec = dataclasses.replace(CARTPOLE, model={"hidden": [32]})
    cfg = ModelConfig.from_spec(spec)
    assert cfg.hidden == (32,) and cfg.encoder == "mlp" and not cfg.obs_norm
    assert cfg.model_map() == {"encoder": "mlp", "hidden": [32], "obs_norm": False}
    assert ModelConfig.from_spec(dataclasses.replace(spec, model=cfg.model_map())) == cfg
    for bad, match in [
        ({"memory": "lstm"}, "does not know"),
        ({"core": "transformer"}, "core"),
        ({"core_size": -1}, "core_size"),
        ({"hidden": [0]}, "hidden"),
        ({"hidden": "64"}, "hidden"),
        ({"hidden": [True]}, "hidden"),
        ({"obs_norm": 1}, "obs_norm"),
        ({"encoder": ""}, "encoder"),
    ]:
        with pytest.raises(ValueError, match=match):
            ModelConfig.from_spec(dataclasses.replace(spec, model=bad))
    with pytest.raises(ValueError, match="unknown encoder"):
        ActorCritic(ModelConfig.from_spec(dataclasses.replace(spec, model={"encoder": "rnn"})))
