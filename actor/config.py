"""Actor settings. Everything about the run itself (env, rollout, network) comes from
the learner's Welcome; these are only what differs per actor process."""

from __future__ import annotations

from dataclasses import dataclass

from core.cli import arg


@dataclass(frozen=True)
class ActorConfig:
    learner: str = arg(
        "tcp://127.0.0.1:5555", "the learner's address, tcp://HOST:PORT (all an actor needs)"
    )
    actor_id: str = arg("", "a stable name for this actor; default: HOSTNAME-PID")
    envs: int = arg(0, "environments stepped by this actor; 0: as the learner says")
    temperature: float = arg(0.0, "softmax temperature for exploration; 0: as the learner assigns")
    run_dir: str = arg("runs/actors", "directory for this actor's JSON log")
    learner_timeout: float = arg(
        5.0,
        "seconds without a word from the learner before it is declared lost and the actor re-joins",
    )
    max_env_failures: int = arg(
        5, "consecutive rollouts in which the environment raised before the actor gives up (exit 4)"
    )
    keys: str = arg(
        "", "CurveZMQ key directory (from `make keys`); empty: no encryption, loopback only"
    )
    seed_offset: int = arg(
        0, "added to the seed the learner assigns (to decorrelate restarted actors)"
    )
    log_level: str = arg("info", "log level", choices=("debug", "info", "warning"))
    torch_threads: int = arg(
        1, "torch intra-op threads; 1 is best when several processes share a machine"
    )

    def __post_init__(self) -> None:
        if self.seed_offset < 0:
            raise ValueError("--seed-offset must be >= 0 (seeds are non-negative)")
        if self.envs < 0:
            raise ValueError("--envs must be >= 0")
        if self.temperature < 0:
            raise ValueError("--temperature must be >= 0")
        if not self.learner_timeout > 0:
            raise ValueError("--learner-timeout must be > 0")
        if self.max_env_failures < 1:
            raise ValueError("--max-env-failures must be >= 1")
        if self.torch_threads < 1:
            raise ValueError("--torch-threads must be >= 1")
