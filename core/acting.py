"""Everything an actor builds from the run spec, with no socket in sight.

    acting = build_acting(spec, num_envs=16, seed=123, temperature=1.0)
    acting.policy.load(weights, version)
    rollout = acting.collect()                      # a protocol.rollout.Rollout
    grads, terms = acting.gradients(rollout)        # acting.mode.sends_gradients only
    msg = acting.gradient_message(rollout, seq=7, ...)   # the same, as a Gradient
    acting.close()

The actor process (actor/) and the learner's serial mode (learner/serial.py) both use
it, so the two build exactly the same envs, policy and collector from the same spec.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from core import algos, coordination
from core.collector import RolloutCollector, split
from core.envs import check_env_matches, default_env_groups, make_vec_env
from core.gradients import rollout_gradients
from core.models import ModelConfig, param_shapes
from core.policy import Policy
from protocol.messages import Gradient
from protocol.rollout import Rollout
from protocol.spec import RunSpec


@dataclass
class Acting:
    spec: RunSpec
    mode: coordination.Coordination  # how this actor takes turns with the learner
    envs: list  # gymnasium VectorEnvs: the env groups, each a block of the actor's envs
    policy: Policy
    collector: RolloutCollector
    shapes: dict[str, tuple[int, ...]]  # parameter shapes, for checking Weights
    algo: algos.Algorithm | None  # only where the mode sends gradients
    loss_cfg: Any

    def collect(self, between_steps: Callable[[], None] | None = None) -> Rollout:
        """One rollout; ``between_steps`` (if given) runs before every env step."""
        if between_steps is None:
            return self.collector.collect(self.policy.act)

        def act(obs, rows: slice) -> tuple[np.ndarray, np.ndarray]:
            between_steps()
            return self.policy.act(obs, rows)

        return self.collector.collect(act)

    def gradients(self, rollout: Rollout) -> tuple[dict[str, np.ndarray], algos.LossTerms]:
        assert self.algo is not None, "gradients are computed only where the mode sends them"
        return rollout_gradients(self.policy.model, rollout, self.algo, self.loss_cfg)

    def gradient_message(self, rollout: Rollout, **ids: Any) -> Gradient:
        """What a gradient-computing actor sends for ``rollout``: the gradients, the
        rollout's rewards, flags and episodes (the learner derives its figures from
        these), and this actor's own step count and loss terms. ``ids``: the
        message's actor_id, incarnation, seq, learner_id, policy_version."""
        grads, terms = self.gradients(rollout)
        return Gradient(
            arrays={**grads, **rollout.gradient_arrays()},
            env_steps=terms.transitions,
            policy_loss=terms.policy_loss.item(),
            value_loss=terms.value_loss.item(),
            entropy=terms.entropy.item(),
            **ids,
        )

    def close(self) -> None:
        self.collector.close()


def build_acting(
    spec: RunSpec,
    *,
    num_envs: int,
    seed: int,
    temperature: float,
    max_env_failures: int = 5,
    env_groups: int = 0,
    on_env_error: Callable[[str, BaseException], None] | None = None,
) -> Acting:
    """Raises ValueError (including core.envs.EnvSpecError) when the spec cannot be
    built here: an unknown env, coordination mode, algorithm, encoder or loss setting.
    ``env_groups``: vector envs the ``num_envs`` are split into, stepped in turn so that
    an env stepping in threads of its own (ale-py) emulates while the policy computes
    the other group's actions (core/collector.py); 0: the env family's choice."""
    mode = coordination.get(spec.coordination)
    algo, loss_cfg = None, None
    if mode.sends_gradients:  # the loss is computed here, with the learner's settings
        algo = algos.get(spec.algo)
        loss_cfg = algo.make_config(spec.loss)
    policy = Policy(ModelConfig.from_spec(spec), temperature=temperature, seed=seed)
    if policy.model.core_state_size != spec.core_state_size:
        raise ValueError(
            f"the run's model keeps {policy.model.core_state_size} values of recurrent "
            f"state per env, its spec says {spec.core_state_size}"
        )
    sizes = split(num_envs, env_groups or default_env_groups(spec.env_id, spec.env_family))
    envs: list = []
    try:
        for size in sizes:
            envs.append(make_vec_env(spec.env_id, size, spec.env_kwargs, spec.env_family))
            check_env_matches(envs[-1], spec)
        collector = RolloutCollector(
            envs,
            spec,
            seed=seed,
            max_failures=max_env_failures,
            on_env_error=on_env_error,
            to_env=policy.to_env,
            memory=policy if policy.recurrent else None,
        )
    except BaseException:
        for env in envs:
            env.close()
        raise
    shapes = param_shapes(policy.model)
    return Acting(spec, mode, envs, policy, collector, shapes, algo, loss_cfg)
