"""Learner settings: one frozen dataclass, one help line per flag (see core/cli.py).

The loss settings are not here: each algorithm's config dataclass (core/algos) owns
them, with their defaults, and ``parse`` (flags.py) adds their flags beside these. A loss flag the
chosen algorithm does not have is refused, not ignored. Defaults that depend on the
algorithm (learning rate, staleness bound) come from its table row.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any

from core import algos
from core.cli import arg
from core.models.memory import CORES
from protocol.sockets import DEFAULT_MAX_FRAME_BYTES
from protocol.spec import MAX_CORE_STATE

# Episodes the learner plays itself before a run ends as solved, unless the preset or
# --confirm-episodes says otherwise: as many as the actors' window (learner/stats.py),
# so the learner's figure is as precise as theirs. Ten were too few where returns vary
# (Pendulum: episodes from -1,400 to -100; a policy whose 100-episode mean had just
# crossed -200 failed 8 confirmations of 10 in a row). Played side by side
# (core/evaluation.py), 100 CartPole episodes take 500 batched forward passes.
DEFAULT_CONFIRM_EPISODES = 100


@dataclass(frozen=True)
class LearnerConfig:
    # What to train
    env: str = arg(
        "CartPole-v1", "environment id: a gymnasium id, or ALE/<Game>-v5 for Atari (ale-py)"
    )
    env_kwargs: str = arg(
        "",
        "JSON object of keyword arguments for the environment, e.g. '{\"repeat_action_probability\": 0}' for ALE",
    )
    config: str = arg(
        "",
        "TOML file setting any of these flags by name (learner/presets.py); flags given on the command line win",
    )
    preset: str = arg(
        "auto",
        "a preset from configs/ (learner/presets.py): auto (the one for --env: its id, else its family, e.g. atari for ALE ids), a file name there (cartpole, atari, ...), or none; --config and flags given still win",
    )
    algo: str = arg("a2c", f"the algorithm, a row of core/algos: {', '.join(algos.ALGORITHMS)}")
    seed: int = arg(1, "seed for the network, the learner's RNGs and the actors' env seeds")
    # Stopping rules
    target_return: float | None = arg(
        None,
        "solved when the mean return of the last 100 episodes reaches this; default: the env's reward threshold",
    )
    max_env_steps: int | None = arg(None, "stop after this many env steps")
    confirm_episodes: int | None = arg(
        None,
        f"before ending a run as solved, the learner plays this many episodes of the policy itself and ends it only if their mean reaches the target too; default: the preset's, else {DEFAULT_CONFIRM_EPISODES} where the run has a target; 0: off (the actors' returns alone end the run)",
    )
    max_seconds: float | None = arg(None, "stop after this many seconds of training")
    # Actors
    actors: int = arg(2, "local actor processes to start; 0: wait for external actors")
    min_actors: int | None = arg(
        None,
        "sync algorithms: the first update waits until this many actors have joined (at most --min-actors-wait-s); default: --actors",
    )
    min_actors_wait_s: float = arg(
        30.0,
        "sync algorithms: after the first join, wait at most this long for --min-actors before training with the actors there are",
    )
    barrier_timeout_s: float = arg(
        10.0,
        "sync algorithms: once a rollout for a version has arrived, wait at most this long for the other live actors' before updating without them; async with --async-gather: the longest a queued rollout waits for the others",
    )
    envs: int = arg(16, "environments per actor (an actor may override with its own --envs)")
    rollout_len: int = arg(32, "steps per env in one rollout (T)")
    temperatures: tuple[float, ...] = arg(
        (1.0,),
        "softmax temperatures handed to actors in join order, cycled (per-actor exploration)",
    )
    # Network and loss
    encoder: str = arg(
        "auto",
        "observation encoder: mlp, cnn (Nature DQN); auto: cnn for uint8 images, mlp otherwise",
    )
    obs_norm: bool = arg(
        False,
        "normalise observations by running mean and variance, updated by the learner from the data it trains on and shipped to actors with the weights (not with a3c-grad)",
    )
    reward_norm: bool = arg(
        False,
        "divide the rewards the loss sees by the running std of the discounted return (SB3's VecNormalize norm_reward), kept by the learner; clipped to +-10 (not with a3c-grad)",
    )
    log_std_init: float = arg(
        0.0,
        "Box actions: the Gaussian's initial log standard deviation (learned from there; rl-zoo uses -2 for Pendulum)",
    )
    hidden: tuple[int, ...] = arg((64, 64), "hidden layer sizes of the MLP encoder")
    core: str = arg(
        "none",
        "recurrent core between the encoder and the heads: lstm, gru, or none (feed-forward); actors carry its state per env and send it with each rollout",
    )
    core_size: int = arg(0, "units of the recurrent core; 0: as wide as the encoder's features")
    lr: float | None = arg(
        None,
        "learning rate; default per algorithm: "
        + ", ".join(f"{a.name} {a.lr:g}" for a in algos.ALGORITHMS.values()),
    )
    optimizer: str | None = arg(
        None,
        "optimizer; default per algorithm: "
        + ", ".join(f"{a.name} {a.optimizer}" for a in algos.ALGORITHMS.values()),
        choices=("adam", "rmsprop"),
    )
    lr_schedule: str = arg(
        "constant",
        "linear: anneal the learning rate to 0 over --max-env-steps (CleanRL's anneal_lr)",
        choices=("constant", "linear"),
    )
    clip_schedule: str = arg(
        "constant",
        "ppo, appo: linear anneals the clip range to 0 over --max-env-steps (rl-zoo's lin_ clip)",
        choices=("constant", "linear"),
    )
    max_grad_norm: float = arg(0.5, "clip the global gradient norm to this")
    max_in_flight: int = arg(
        1,
        "rollouts an actor may have sent but not yet had acknowledged; more hides latency on slow links, fewer keeps the policy lag low",
    )
    max_batches_per_update: int = arg(
        8,
        "async algorithms: rollouts that queued while the learner was busy are merged into one update, at most this many",
    )
    async_gather: float = arg(
        0.5,
        "async algorithms: an update waits until rollouts from this share of the live actors have queued (at most --max-batches-per-update, at most --barrier-timeout-s), so the versions per round of rollouts, and the policy lag, do not grow with the actor count; 0: update on whatever has queued",
    )
    max_policy_lag: int | None = arg(
        None,
        "async and gradient algorithms: drop (and count) batches collected more than this many versions ago; default per algorithm: "
        + ", ".join(
            f"{a.name} {a.max_policy_lag}"
            for a in algos.ALGORITHMS.values()
            if a.mode.max_lag is None  # the modes whose lag rule is this flag
        ),
    )
    # Network endpoints
    host: str = arg(
        "127.0.0.1", "address to bind; anything but loopback needs --keys or --insecure"
    )
    port: int = arg(5555, "port for actor traffic (ROUTER); 0: any free port")
    pub_port: int = arg(
        0, "port for the weights broadcast (PUB); 0: --port + 1, or any free port when --port is 0"
    )
    keys: str = arg(
        "",
        "CurveZMQ key directory of the learner (from `make keys`); turns on encryption and authentication",
    )
    insecure: bool = arg(False, "allow binding a non-loopback address without --keys")
    address_file: str = arg(
        "",
        "once bound, write where this learner listens (tcp://HOST:PORT of both sockets, JSON; protocol/address.py) to this file, atomically; removed on exit. Actors started with --learner-file PATH find it there (cluster launches, --port 0)",
    )
    signal_exit_code: int = arg(
        0,
        "exit code when stopped by SIGTERM or SIGINT (after the final checkpoint). 0: the run is over and the actors are told to leave. Non-zero (143 under Kubernetes, where SIGTERM means eviction or a drain): the learner was interrupted and a new one will resume, so the actors are not told and keep re-joining",
    )
    advertise_host: str = arg(
        "",
        "the host name or address other machines reach this learner by, written to --address-file; default: --host, or this machine's hostname when --host binds every interface (0.0.0.0, *, ::)",
    )
    max_frame_bytes: int = arg(
        DEFAULT_MAX_FRAME_BYTES,
        "largest frame accepted; larger ones are cut off by ZeroMQ before Python sees them",
    )
    # Liveness and bad input
    heartbeat_s: float = arg(0.5, "actors send a heartbeat this often")
    actor_timeout_s: float = arg(3.0, "an actor silent this long is declared lost")
    max_bad_messages: int = arg(20, "an actor that sends this many bad messages is quarantined")
    # Output
    run_dir: str = arg(
        "", "run directory for logs, checkpoints, summary.json; default: runs/<algo>-<env>-<time>"
    )
    checkpoint_every_s: float = arg(
        60.0, "write a checkpoint this often (seconds of training); 0: only at the end"
    )
    keep_checkpoints: int = arg(3, "checkpoints kept on disk")
    resume: bool = arg(False, "resume from the newest good checkpoint in --run-dir")
    log_interval_s: float = arg(1.0, "seconds between progress events")
    milestones: tuple[float, ...] = arg(
        (),
        "log a return_reached event when the mean return of the last 100 episodes first reaches each of these",
    )
    log_level: str = arg("info", "log level", choices=("debug", "info", "warning"))
    tensorboard: bool = arg(True, "write TensorBoard scalars into <run-dir>/tb/")
    eval_every_s: float = arg(
        0.0,
        "every this many seconds of training, play --eval-episodes episodes of the newest policy in the learner (a thread; training goes on) and log an evaluation event; 0: off",
    )
    eval_episodes: int = arg(10, "episodes per --eval-every-s evaluation")
    console: str = arg(
        "auto",
        "what stderr shows (learner/console.py): live (a view updated in place, other events above it), plain (a short line per progress event), off (only the final summary); auto: live on a terminal, else plain. learner.jsonl always has every event",
        choices=("auto", "live", "plain", "off"),
    )
    device: str = arg("auto", "torch device for training", choices=("auto", "cpu", "cuda"))
    torch_threads: int = arg(1, "torch intra-op threads")
    weights_delay: int = arg(
        0,
        "study aid (async and gradient algorithms): actors get the weights this many updates old, a controlled policy lag (make staleness)",
    )
    serial: bool = arg(
        False,
        "debugging: run --actors actors in this process, without sockets (same algorithms, same updates)",
    )
    # The algorithm's loss settings (not a flag itself: see parse); None: its defaults.
    loss: Any = field(default=None, compare=True)

    def __post_init__(self) -> None:
        positive = {
            "envs": self.envs,
            "rollout_len": self.rollout_len,
            "lr": self.learning_rate,
            "heartbeat_s": self.heartbeat_s,
            "actor_timeout_s": self.actor_timeout_s,
            "max_grad_norm": self.max_grad_norm,
            "log_interval_s": self.log_interval_s,
            "max_bad_messages": self.max_bad_messages,
            "max_batches_per_update": self.max_batches_per_update,
            "max_in_flight": self.max_in_flight,
            "keep_checkpoints": self.keep_checkpoints,
            "torch_threads": self.torch_threads,
            "max_frame_bytes": self.max_frame_bytes,
        }
        if self.loss is None:
            object.__setattr__(self, "loss", self.algorithm.make_config())
        if not isinstance(self.loss, self.algorithm.config):
            raise ValueError(f"loss settings are not {self.algorithm.config.__name__}")
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.actors < 0 or self.policy_lag_bound < 0 or self.checkpoint_every_s < 0:
            raise ValueError("--actors, --max-policy-lag and --checkpoint-every-s must be >= 0")
        try:
            kwargs = json.loads(self.env_kwargs) if self.env_kwargs else {}
        except json.JSONDecodeError as exc:
            raise ValueError(f"--env-kwargs is not JSON: {exc}") from None
        if not isinstance(kwargs, dict):
            raise ValueError("--env-kwargs must be a JSON object")
        if not 0 <= self.seed < 2**31:
            raise ValueError("--seed must be in [0, 2**31)")
        if not self.min_actors_wait_s > 0 or not self.barrier_timeout_s > 0:
            raise ValueError("--min-actors-wait-s and --barrier-timeout-s must be > 0")
        if self.weights_delay < 0:
            raise ValueError("--weights-delay must be >= 0")
        if self.weights_delay and self.weights_delay >= self.policy_lag_bound:
            raise ValueError(
                "--weights-delay must be below --max-policy-lag, or every rollout would be dropped as stale"
            )
        if self.weights_delay and self.algorithm.mode.waits_for_release:
            raise ValueError(
                "--weights-delay needs an async or gradient algorithm (a sync actor waits for the newest weights)"
            )
        if self.algorithm.mode.sends_gradients:  # the loss is computed on the actors
            if self.obs_norm:
                raise ValueError(
                    f"--obs-norm: the learner updates the statistics from the observations it "
                    f"trains on, and --algo {self.algo} sends gradients only; use a3c or a2c"
                )
            if self.reward_norm:
                raise ValueError(
                    f"--reward-norm: --algo {self.algo} computes its loss on the actors, which "
                    "never see the learner's reward statistics; use a3c or a2c"
                )
        if self.serial and self.actors < 1:
            raise ValueError("--serial needs --actors >= 1 (the in-process actors)")
        if not 0 <= self.signal_exit_code < 256:
            raise ValueError("--signal-exit-code must be in [0, 255]")
        if not 0 <= self.port < 65536 or not 0 <= self.pub_port < 65536:
            raise ValueError("ports must be in [0, 65535]")
        if self.port and self.pub_port == self.port:
            raise ValueError("--pub-port must differ from --port")
        if not self.temperatures or any(
            not (t > 0 and math.isfinite(t)) for t in self.temperatures
        ):
            raise ValueError("--temperatures must be positive numbers")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("--hidden sizes must be >= 1")
        if self.core not in CORES:
            raise ValueError(f"--core must be one of {', '.join(CORES)}")
        if not 0 <= self.core_size <= MAX_CORE_STATE // 2:
            raise ValueError(f"--core-size must be in [0, {MAX_CORE_STATE // 2}]")
        if self.actor_timeout_s <= self.heartbeat_s:
            raise ValueError(
                "--actor-timeout-s must exceed --heartbeat-s, or every actor would be lost between heartbeats"
            )
        for name in ("lr_schedule", "clip_schedule"):
            if getattr(self, name) == "linear" and not self.max_env_steps:
                flag = "--" + name.replace("_", "-")
                raise ValueError(f"{flag} linear anneals over --max-env-steps: give one")
        if self.clip_schedule == "linear" and not hasattr(self.loss, "clip"):
            raise ValueError(f"--clip-schedule: {self.algo} has no clip range")
        if not 0 <= self.async_gather <= 1:
            raise ValueError("--async-gather must be in [0, 1]")
        if self.confirm_episodes is not None and not 0 <= self.confirm_episodes <= 10_000:
            raise ValueError("--confirm-episodes must be in [0, 10000]")
        if not self.eval_every_s >= 0 or not 1 <= self.eval_episodes <= 10_000:
            raise ValueError("--eval-every-s must be >= 0 and --eval-episodes in [1, 10000]")
        for name in ("max_env_steps", "max_seconds", "target_return"):
            value = getattr(self, name)
            if value is not None and name != "target_return" and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0")

    @property
    def env_kwargs_dict(self) -> dict[str, Any]:
        return json.loads(self.env_kwargs) if self.env_kwargs else {}

    @property
    def first_update_actors(self) -> int:
        return self.actors if self.min_actors is None else self.min_actors

    @property
    def algorithm(self) -> algos.Algorithm:
        return algos.get(self.algo)

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else self.algorithm.lr

    @property
    def optimizer_name(self) -> str:
        return self.optimizer if self.optimizer is not None else self.algorithm.optimizer

    @property
    def policy_lag_bound(self) -> int:
        if self.max_policy_lag is not None:
            return self.max_policy_lag
        return self.algorithm.max_policy_lag

    @property
    def effective_pub_port(self) -> int:
        if self.pub_port:
            return self.pub_port
        return self.port + 1 if self.port else 0

    def resolved(self) -> dict[str, Any]:
        """Every setting as it applies (per-algorithm defaults filled in), loss
        settings included, as plain JSON values: what the run directory and the
        checkpoints record."""
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = list(v) if isinstance(v, tuple) else v
        out["lr"] = self.learning_rate
        out["optimizer"] = self.optimizer_name
        out["max_policy_lag"] = self.policy_lag_bound
        out["loss"] = algos.config_dict(self.loss)
        return out
