"""Learner settings: one frozen dataclass, one help line per flag (see core/cli.py)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from core.cli import arg
from protocol.sockets import DEFAULT_MAX_FRAME_BYTES


@dataclass(frozen=True)
class LearnerConfig:
    # What to train
    env: str = arg("CartPole-v1", "gymnasium environment id")
    algo: str = arg(
        "a2c",
        "a2c: synchronous; a3c: asynchronous, actors send experience; "
        "a3c-grad: asynchronous, actors send gradients",
        choices=("a2c", "a3c", "a3c-grad"),
    )
    seed: int = arg(1, "seed for the network, the learner's RNGs and the actors' env seeds")
    # Stopping rules
    target_return: float | None = arg(
        None,
        "solved when the mean return of the last 100 episodes reaches this; default: the env's reward threshold",
    )
    max_env_steps: int | None = arg(None, "stop after this many env steps")
    max_seconds: float | None = arg(None, "stop after this many seconds of training")
    # Actors
    actors: int = arg(2, "local actor processes to start; 0: wait for external actors")
    min_actors: int | None = arg(
        None, "a2c: the first update waits until this many actors have joined; default: --actors"
    )
    envs: int = arg(16, "environments per actor (an actor may override with its own --envs)")
    rollout_len: int = arg(32, "steps per env in one rollout (T)")
    temperatures: tuple[float, ...] = arg(
        (1.0,),
        "softmax temperatures handed to actors in join order, cycled (per-actor exploration)",
    )
    # Network and loss
    hidden: tuple[int, ...] = arg((64, 64), "hidden layer sizes of the policy and of the value MLP")
    lr: float | None = arg(
        None,
        "learning rate; default 4e-3 for a2c (one update per rollout of every actor), 2e-3 for a3c and a3c-grad (about half the samples per update)",
    )
    optimizer: str = arg("adam", "optimizer", choices=("adam", "rmsprop"))
    gamma: float = arg(0.99, "discount")
    gae_lambda: float = arg(
        0.95, "GAE lambda; 1.0 gives exactly the n-step return of A3C (advantage = return - value)"
    )
    value_coef: float = arg(0.5, "weight of the value loss")
    entropy_coef: float = arg(0.0, "weight of the entropy bonus")
    max_grad_norm: float = arg(0.5, "clip the global gradient norm to this")
    normalize_advantages: bool = arg(False, "normalise advantages per update (zero mean, unit std)")
    max_in_flight: int = arg(
        1,
        "rollouts an actor may have sent but not yet had acknowledged; more hides latency on slow links, fewer keeps the policy lag low",
    )
    max_batches_per_update: int = arg(
        8, "a3c: at most this many queued rollouts are merged into one update"
    )
    is_clip: float = arg(
        1.0,
        "truncate the importance ratio pi/mu of each policy-gradient term at this (corrects policy lag and temperature); 0: plain A2C/A3C loss",
    )
    max_policy_lag: int = arg(
        4, "a3c/a3c-grad: drop (and count) batches collected more than this many versions ago"
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
    device: str = arg("auto", "torch device for training", choices=("auto", "cpu", "cuda"))
    torch_threads: int = arg(1, "torch intra-op threads")
    debug_update_delay_s: float = arg(
        0.0, "testing aid: sleep this long after every update (a deliberately slow learner)"
    )

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
        for name, value in positive.items():
            if not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0, got {value}")
        if self.is_clip < 0:
            raise ValueError("--is-clip must be >= 0")
        if self.actors < 0 or self.max_policy_lag < 0 or self.checkpoint_every_s < 0:
            raise ValueError("--actors, --max-policy-lag and --checkpoint-every-s must be >= 0")
        if not 0 <= self.port < 65536 or not 0 <= self.pub_port < 65536:
            raise ValueError("ports must be in [0, 65535]")
        if self.port and self.pub_port == self.port:
            raise ValueError("--pub-port must differ from --port")
        if not 0.0 <= self.gamma <= 1.0 or not 0.0 <= self.gae_lambda <= 1.0:
            raise ValueError("--gamma and --gae-lambda must be in [0, 1]")
        if not self.temperatures or any(
            not (t > 0 and math.isfinite(t)) for t in self.temperatures
        ):
            raise ValueError("--temperatures must be positive numbers")
        if not self.hidden or any(h < 1 for h in self.hidden):
            raise ValueError("--hidden sizes must be >= 1")
        if self.actor_timeout_s <= self.heartbeat_s:
            raise ValueError(
                "--actor-timeout-s must exceed --heartbeat-s, or every actor would be lost between heartbeats"
            )
        for name in ("max_env_steps", "max_seconds", "target_return"):
            value = getattr(self, name)
            if value is not None and name != "target_return" and not value > 0:
                raise ValueError(f"--{name.replace('_', '-')} must be > 0")

    @property
    def first_update_actors(self) -> int:
        return self.actors if self.min_actors is None else self.min_actors

    @property
    def learning_rate(self) -> float:
        if self.lr is not None:
            return self.lr
        return 4e-3 if self.algo == "a2c" else 2e-3

    @property
    def effective_pub_port(self) -> int:
        if self.pub_port:
            return self.pub_port
        return self.port + 1 if self.port else 0
