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
    learner_file: str = arg(
        "",
        "read the learner's address from this file (written by the learner's --address-file) instead of --learner: wait for it, and read it again whenever the learner is lost (a restarted learner may listen elsewhere)",
    )
    learner_file_timeout: float = arg(
        120.0,
        "seconds to wait for --learner-file to name a learner before giving up (exit 5)",
    )
    join_timeout: float = arg(
        0.0,
        "give up (exit 5) when no learner has answered a join for this many seconds; 0: keep trying (a learner may be restarting)",
    )
    signal_exit_code: int = arg(
        0,
        "exit code when stopped by SIGTERM or SIGINT: 0, or non-zero (143 under Kubernetes, where SIGTERM means eviction) so that the actor is started again",
    )
    actor_id: str = arg("", "a stable name for this actor; default: HOSTNAME-PID")
    envs: int = arg(0, "environments stepped by this actor; 0: as the learner says")
    env_groups: int = arg(
        0,
        "vector envs the actor's envs are split into and stepped in turn, so that an env that steps in threads of its own (ale-py) emulates one group while the policy computes the other's actions; 0: the env family's choice (2 for ALE, 1 otherwise)",
    )
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
        "",
        "CurveZMQ key directory (from `make keys`); empty: no encryption, so a learner on another host needs --insecure",
    )
    insecure: bool = arg(
        False,
        "follow a learner on another host without --keys (trusted networks only): rollouts and weights cross the network unencrypted, and whoever answers at the address is taken for the learner",
    )
    seed_offset: int = arg(
        0, "added to the seed the learner assigns (to decorrelate restarted actors)"
    )
    respawn: bool = arg(
        False,
        "run the actor in a child process and start it again (same actor id, so the learner sees a re-join) when it crashes or is killed; back-off from 0.5 s, doubling to 8 s. Not after a clean exit (0), a usage or protocol error (2), an auth failure (3) or no learner (5). For schedulers that never restart one task (Slurm); Kubernetes and Ray restart by themselves",
    )
    max_restarts: int = arg(
        10,
        "--respawn: give up (crash loop) after this many restarts within --restart-window-s",
    )
    restart_window_s: float = arg(300.0, "--respawn: the window --max-restarts counts in")
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
        if self.env_groups < 0:
            raise ValueError("--env-groups must be >= 0 (0: the env family's choice)")
        if not self.learner_timeout > 0:
            raise ValueError("--learner-timeout must be > 0")
        if self.max_env_failures < 1:
            raise ValueError("--max-env-failures must be >= 1")
        if self.join_timeout < 0 or not 0 <= self.signal_exit_code < 256:
            raise ValueError("--join-timeout must be >= 0 and --signal-exit-code in [0, 255]")
        if not self.learner_file_timeout > 0:
            raise ValueError("--learner-file-timeout must be > 0")
        if self.max_restarts < 0 or not self.restart_window_s > 0:
            raise ValueError("--max-restarts must be >= 0 and --restart-window-s > 0")
        if self.torch_threads < 1:
            raise ValueError("--torch-threads must be >= 1")
