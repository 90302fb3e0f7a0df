"""The actor-critic network: an encoder (encoders.py), optionally a recurrent core
(memory.py), and an action head (heads.py), with its config beside it.

    policy:  obs -> policy encoder [-> core] -> Linear -> head output (logits, or mean)
    value:   obs -> value encoder  [-> core] -> Linear -> V(obs)

The policy and value trunks (encoder, and core if any) are one shared module when the
encoder says so (``SHARED``: the CNN, as IMPALA and Sample Factory share theirs), two
copies otherwise (the MLP, as SB3-contrib's RecurrentPPO gives the critic its own
LSTM: on control tasks a shared trunk lets the value loss disturb the policy). With a
recurrent core the state per env is the policy core's, then the value core's if it has
one, and the network is evaluated on a whole rollout by ``unroll`` (from the state the
rollout carries) and while acting by ``step`` (from the state the actor holds). Weights cross the wire as a flat
``{parameter name: float32 array}`` map (``weights_to_arrays``, ``load_arrays``); never
pickled.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from core.models.encoders import DictEncoder, build_encoder, orthogonal
from core.models.heads import build_head
from core.models.memory import CORES, RecurrentCore, state_size
from core.models.normalizer import ObsNormalizer
from protocol.rollout import map_obs
from protocol.spec import ACTION_KINDS, MAX_CORE_STATE, RunSpec


@dataclass(frozen=True)
class ModelConfig:
    obs_shape: tuple[int, ...]
    action_kind: str  # one of protocol.spec.ACTION_KINDS
    action_n: int = 0  # Discrete: number of actions
    action_shape: tuple[int, ...] = ()  # the other kinds, with their bounds as in RunSpec
    action_low: tuple[float, ...] = ()
    action_high: tuple[float, ...] = ()
    encoder: str = "mlp"
    hidden: tuple[int, ...] = (64, 64)
    obs_dtype: str = "<f4"
    obs_norm: bool = False  # running observation normalisation (normalizer.py)
    # A Dict observation: (key, shape, wire dtype) of each key; obs_shape is then () and
    # the encoder "dict" (encoders.DictEncoder).
    obs_parts: tuple[tuple[str, tuple[int, ...], str], ...] = ()
    core: str = "none"  # recurrent core: none, lstm, gru (memory.py)
    core_size: int = 0  # its width; 0: as wide as the encoder's features

    def __post_init__(self) -> None:
        if self.action_kind not in ACTION_KINDS:
            raise ValueError(f"action_kind must be one of {ACTION_KINDS}, got {self.action_kind!r}")
        if not self.hidden or not (self.obs_parts or math.prod(self.obs_shape or (0,)) >= 1):
            raise ValueError("obs_shape (or obs_parts) must be non-empty and hidden non-empty")
        if (self.encoder == "dict") != bool(self.obs_parts):
            raise ValueError(
                "the dict encoder is for Dict observations, whose keys each get their own "
                "encoder (cnn for images, mlp otherwise); --encoder applies to Box ones"
            )
        if self.obs_norm and self.obs_parts:
            raise ValueError("observation normalisation is for Box vector observations")
        if self.core not in CORES:
            raise ValueError(f"core must be one of {CORES}, got {self.core!r}")
        if self.obs_norm and self.obs_dtype == "|u1":
            raise ValueError(
                "observation normalisation is for vector observations; images are scaled "
                "to [0, 1] by the encoder"
            )
        if self.action_kind == "box" and not self.action_low:
            # Unbounded unless told: the head clips into these for the env only.
            size = math.prod(self.action_shape)
            object.__setattr__(self, "action_low", (-math.inf,) * size)
            object.__setattr__(self, "action_high", (math.inf,) * size)

    @property
    def core_state_size(self) -> int:
        """RunSpec.core_state_size of this network (0: feed-forward), without building
        more of it than its encoder."""
        if self.core == "none":
            return 0
        encoder = self.make_encoder()
        cores = 1 if getattr(encoder, "SHARED", False) else 2
        return cores * state_size(self.core, self.core_size or encoder.out_dim)

    def make_encoder(self) -> nn.Module:
        """A fresh encoder for these observations (a ValueError names an unknown one)."""
        if self.obs_parts:
            return DictEncoder(self.obs_parts, self.hidden)
        return build_encoder(self.encoder, self.obs_shape, self.hidden, self.obs_dtype)

    @classmethod
    def from_spec(cls, spec: RunSpec) -> ModelConfig:
        """The network a run spec describes: its spaces, and its ``model`` map read
        by ``read_model_map`` (a ValueError names a key or value it does not know)."""
        return cls(
            obs_shape=tuple(spec.obs_shape),
            action_kind=spec.action_kind,
            action_n=spec.action_n,
            action_shape=tuple(spec.action_shape),
            action_low=tuple(spec.action_low),
            action_high=tuple(spec.action_high),
            obs_dtype=spec.obs_dtype,
            obs_parts=tuple((p.key, p.shape, p.dtype) for p in spec.obs_parts if p.key),
            **read_model_map(spec.model),
        )

    def model_map(self) -> dict[str, Any]:
        """The map a RunSpec carries for this network (plain JSON values). A
        feed-forward network's map names no core, as before cores existed, so its
        checkpoints resume across that change."""
        out = {"encoder": self.encoder, "hidden": list(self.hidden), "obs_norm": self.obs_norm}
        if self.core != "none":
            out.update(core=self.core, core_size=self.core_size)
        return out


# The keys of a RunSpec's ``model`` map and their checks; a missing key takes
# ModelConfig's default. A new network setting is a key here and a ModelConfig field.
MODEL_KEYS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "encoder": (lambda v: isinstance(v, str) and 1 <= len(v) <= 64, "a name"),
    "hidden": (
        lambda v: (
            isinstance(v, list)
            and 1 <= len(v) <= 16
            and all(isinstance(h, int) and not isinstance(h, bool) and 1 <= h <= 65536 for h in v)
        ),
        "1 to 16 sizes in [1, 65536]",
    ),
    "obs_norm": (lambda v: isinstance(v, bool), "true or false"),
    "core": (lambda v: v in CORES, f"one of {list(CORES)}"),
    "core_size": (
        lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= MAX_CORE_STATE // 2,
        f"an integer in [0, {MAX_CORE_STATE // 2}]",
    ),
}


def read_model_map(model: Mapping[str, Any]) -> dict[str, Any]:
    """A RunSpec's ``model`` map as ModelConfig keyword arguments, checked key by key."""
    unknown = sorted(map(str, model.keys() - MODEL_KEYS.keys()))
    if unknown:
        raise ValueError(f"the run's model has settings this actor does not know: {unknown[:4]}")
    out: dict[str, Any] = {}
    for key, value in model.items():
        ok, what = MODEL_KEYS[key]
        if not ok(value):
            raise ValueError(f"the run's model setting {key} must be {what}")
        out[key] = tuple(value) if isinstance(value, list) else value
    return out


class ActorCritic(nn.Module):
    def __init__(self, cfg: ModelConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.obs_norm = ObsNormalizer(cfg.obs_shape) if cfg.obs_norm else None
        self.head = build_head(cfg)
        self.policy_encoder = cfg.make_encoder()
        shared = getattr(self.policy_encoder, "SHARED", False)
        self.value_encoder = None if shared else cfg.make_encoder()
        feat = self.policy_encoder.out_dim
        self.core = self.value_core = None
        if cfg.core != "none":
            self.core = RecurrentCore(cfg.core, feat, cfg.core_size or feat)
            if not shared:
                self.value_core = RecurrentCore(cfg.core, feat, cfg.core_size or feat)
            feat = self.core.out_dim
        # A small last-layer gain keeps the first policy close to uniform.
        self.policy_out = orthogonal(nn.Linear(feat, self.head.out_dim), 0.01)
        self.value_out = orthogonal(nn.Linear(feat, 1), 1.0)

    @property
    def core_state_size(self) -> int:
        """Values of recurrent state per env (RunSpec.core_state_size); 0: none."""
        cores = [c for c in (self.core, self.value_core) if c is not None]
        return sum(c.state_size for c in cores)

    def initial_state(self, n: int) -> torch.Tensor:
        return torch.zeros(n, self.core_state_size)  # [N, S]

    def _normalized(self, obs: torch.Tensor) -> torch.Tensor:
        return obs if self.obs_norm is None else self.obs_norm(obs)

    def forward(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """obs [..., *obs_shape] -> (policy output [..., out_dim], value [...]);
        a feed-forward network only (a recurrent one is ``unroll``ed)."""
        if self.core is not None:
            raise TypeError("a recurrent network is evaluated with unroll() or step()")
        obs = self._normalized(obs)
        feat = self.policy_encoder(obs)  # [..., feat]
        value_feat = feat if self.value_encoder is None else self.value_encoder(obs)
        return self.policy_out(feat), self.value_out(value_feat).squeeze(-1)

    def _trunks(self, obs: torch.Tensor, state: torch.Tensor, first: torch.Tensor | None):
        """obs [T, N, *obs_shape], state [N, S] -> (policy features [T, N, size],
        value features [T, N, size], state after step T-1 [N, S])."""
        obs = self._normalized(obs)
        policy_state, value_state = state.split(
            [self.core.state_size, state.shape[-1] - self.core.state_size], dim=-1
        )
        feat, policy_state = self.core(self.policy_encoder(obs), policy_state, first)
        if self.value_core is None:
            return feat, feat, policy_state
        value_feat, value_state = self.value_core(self.value_encoder(obs), value_state, first)
        return feat, value_feat, torch.cat([policy_state, value_state], dim=-1)

    def unroll(self, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """A rollout's batch (core/batch.py) -> (policy output [T+1, N, out_dim],
        values [T+1, N]): every loss's view of the network. A recurrent core runs
        from the batch's ``core_state``, restarting an env's state after each step
        that is not a transition (the next-step autoreset, or an env error's reset),
        exactly where the actor restarted it."""
        if self.core is None:
            return self(batch.obs)
        if batch.core_state is None:
            raise ValueError("a recurrent network needs the rollout's core_state")
        first = torch.cat([torch.zeros_like(batch.valid[:1]), ~batch.valid])  # [T+1, N]
        feat, value_feat, _ = self._trunks(batch.obs, batch.core_state, first)
        return self.policy_out(feat), self.value_out(value_feat).squeeze(-1)

    def policy(self, obs: torch.Tensor) -> torch.Tensor:
        """The policy output alone (what acting needs; the value is not evaluated);
        a feed-forward network only."""
        if self.core is not None:
            raise TypeError("a recurrent network acts with step()")
        return self.policy_out(self.policy_encoder(self._normalized(obs)))

    def step(
        self, obs: torch.Tensor, state: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Acting: obs [N, *obs_shape] and the envs' core state [N, S] (None for a
        feed-forward network) -> (policy output [N, out_dim], the state after it).
        A separate value core is stepped too (its state is part of the envs'), its
        head is not."""
        if self.core is None:
            return self.policy(obs), None
        one_step = map_obs(lambda x: x.unsqueeze(0), obs)  # [1, N, ...]
        feat, _, state = self._trunks(one_step, state, None)  # [1, N, size]
        return self.policy_out(feat[0]), state

    def keep_in_bounds(self) -> None:
        """After an optimizer step: bounded parameters (the Gaussian's log-std) are put
        back inside their bounds."""
        bound = getattr(self.head, "keep_in_bounds", None)
        if bound is not None:
            bound()

    def distribution(self, out: torch.Tensor) -> torch.distributions.Distribution:
        return self.head.distribution(out)


def wire_tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    """What a Weights message carries: the parameters, and the statistics that are part
    of the policy without being trained by gradients (the observation normaliser's
    mean and variance, normalizer.py). Gradients are of the parameters alone."""
    out = dict(model.named_parameters())
    for prefix, module in model.named_modules():
        if isinstance(module, ObsNormalizer):
            out.update({f"{prefix}.{name}": getattr(module, name) for name in module.SHIPPED})
    return out


def param_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """The shapes of ``wire_tensors``: what a Weights message is checked against."""
    return {name: tuple(t.shape) for name, t in wire_tensors(model).items()}


def weights_to_arrays(model: nn.Module) -> dict[str, np.ndarray]:
    """Parameters as float32 CPU arrays of their own, keyed by parameter name. Copies:
    on the CPU the tensor would otherwise share memory with the live parameter, and a
    Weights message still queued (ZeroMQ sends large frames without copying) would go
    out with the next update's values under this version's number."""
    return {
        name: t.detach().to("cpu", torch.float32, copy=True).numpy()
        for name, t in wire_tensors(model).items()
    }


@torch.no_grad()
def load_arrays(model: nn.Module, arrays: Mapping[str, np.ndarray]) -> None:
    """Copy checked arrays (see protocol.checks.check_weights) into the parameters and
    the shipped statistics."""
    for name, t in wire_tensors(model).items():
        t.copy_(torch.as_tensor(np.asarray(arrays[name])))
