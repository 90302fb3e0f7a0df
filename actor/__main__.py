"""``python -m actor --learner tcp://HOST:PORT`` (or ``--learner-file PATH``): parse, set
up logs and signals, run. With ``--respawn`` this process only supervises a child actor
(actor/respawn.py) and never imports torch."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from actor.config import ActorConfig
from actor.exits import EXIT_AUTH  # no torch: a supervisor imports this module too
from core import cluster, logs, procs
from core.cli import build_parser, parse_config
from protocol import keys, sockets


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        ActorConfig,
        prog="python -m actor",
        description="An actor: steps environments and streams experience to a learner. "
        "The environment, network and rollout settings come from the learner.",
    )
    cfg = parse_config(ActorConfig, parser, argv)
    if not cfg.learner_file:
        try:
            sockets.parse_endpoint(cfg.learner)
        except sockets.EndpointError as exc:
            parser.error(str(exc))
        if not (cfg.keys or cfg.insecure) and (refusal := sockets.plaintext_refusal(cfg.learner)):
            parser.error(f"--learner: {refusal}")
    curve = None
    if cfg.keys:
        try:
            name, curve = keys.load_actor_keys(Path(cfg.keys))
        except (OSError, ValueError) as exc:
            print(f"actor: --keys {cfg.keys}: {exc}", file=sys.stderr)
            return EXIT_AUTH
        # With keys, the identity is the key's name: the learner checks it against the
        # authenticated key, so a different --actor-id would only be refused.
        cfg = dataclasses.replace(cfg, actor_id=cfg.actor_id or name)
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    if cfg.respawn:
        from actor.respawn import Supervisor, with_stable_id

        cfg = with_stable_id(cfg)
        return Supervisor(cfg, _logs(cfg, process="supervisor"), lambda: stop["requested"]).run()
    if not cfg.actor_id:
        cfg = dataclasses.replace(cfg, actor_id=f"{socket.gethostname()}-{os.getpid()}")
    import torch

    from actor.client import ActorClient

    torch.set_num_threads(cfg.torch_threads)
    log = _logs(cfg)
    return ActorClient(cfg, log, lambda: stop["requested"], curve=curve).run()


def _logs(cfg: ActorConfig, **bind: str):
    try:
        return logs.configure(
            "actor",
            Path(cfg.run_dir) / f"actor-{cfg.actor_id}.jsonl",
            level=cfg.log_level,
            actor_id=cfg.actor_id,
            **cluster.ids(),
            **bind,
        )
    except OSError as exc:
        print(
            f"actor: --run-dir {cfg.run_dir}: cannot write the log there: "
            f"{type(exc).__name__}: {exc}",
            file=sys.stderr,
        )
        sys.exit(2)


if __name__ == "__main__":
    code = main()
    procs.spare_teardown()
    sys.exit(code)
