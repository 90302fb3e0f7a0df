"""``python -m actor --learner tcp://HOST:PORT``: parse, set up logs and signals, run."""

from __future__ import annotations

import dataclasses
import os
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

from actor.client import EXIT_AUTH, ActorClient
from actor.config import ActorConfig
from core import logs
from core.cli import build_parser, parse_config
from protocol import sockets


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser(
        ActorConfig,
        prog="python -m actor",
        description="An actor: steps environments and streams experience to a learner. "
        "The environment, network and rollout settings come from the learner.",
    )
    cfg = parse_config(ActorConfig, parser, argv)
    try:
        sockets.parse_endpoint(cfg.learner)
    except sockets.EndpointError as exc:
        parser.error(str(exc))
    curve = None
    if cfg.keys:
        try:
            name, curve = sockets.load_actor_keys(Path(cfg.keys))
        except (OSError, ValueError) as exc:
            print(f"actor: --keys {cfg.keys}: {exc}", file=sys.stderr)
            return EXIT_AUTH
        # With keys, the identity is the key's name: the learner checks it against the
        # authenticated key, so a different --actor-id would only be refused.
        cfg = dataclasses.replace(cfg, actor_id=cfg.actor_id or name)
    if not cfg.actor_id:
        cfg = dataclasses.replace(cfg, actor_id=f"{socket.gethostname()}-{os.getpid()}")
    torch.set_num_threads(cfg.torch_threads)
    log = logs.configure(
        "actor",
        Path(cfg.run_dir) / f"actor-{cfg.actor_id}.jsonl",
        level=cfg.log_level,
        actor_id=cfg.actor_id,
    )
    stop = {"requested": False}

    def request_stop(signum: int, _frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    return ActorClient(cfg, log, lambda: stop["requested"], curve=curve).run()


if __name__ == "__main__":
    sys.exit(main())
