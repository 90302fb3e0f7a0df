"""Create CurveZMQ keys for a learner and its actors (``make keys``).

    python scripts/keys.py --out keys --actors actor-1,actor-2

writes

    keys/learner/             give to the learner:  --keys keys/learner
        learner.key, learner.key_secret, authorized/actor-1.key, authorized/actor-2.key
    keys/actor-1/             copy to actor-1's host: --keys keys/actor-1
        learner.key, actor-1.key, actor-1.key_secret

Secret files are created mode 0600 and directories 0700. To admit another actor
later, run again with ``--actors NEW --add``: existing keys are kept.

A fleet (a cluster job's actors) gets its keys from one command:

    python scripts/keys.py --out RUN/keys --fleet 256

writes ``RUN/keys/learner/`` and ``RUN/keys/task-0/`` ... ``RUN/keys/task-255/``; task K
of the actors' job step starts with ``--keys RUN/keys/task-K`` and is known to the
learner as ``task-K`` (restarted, it is the same actor). It is idempotent: keys that
exist are kept (a resubmitted or requeued job finds the same ones), missing ones are
added, so a job may run it every time it starts.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.sockets import write_keypair  # noqa: E402

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


FLEET_PREFIX = "task-"


def fleet_names(count: int, prefix: str = FLEET_PREFIX) -> list[str]:
    return [f"{prefix}{k}" for k in range(count)]


def make_keys(out: Path, actors: list[str], add: bool = False, keep: bool = False) -> None:
    """``add``: the learner's keys may exist already; ``keep``: so may actors' (each
    actor's directory and its authorisation are made only where missing)."""
    for name in actors:
        if not NAME.match(name) or name == "learner":
            raise ValueError(
                f"bad actor name {name!r}: letters, digits, '.', '_', '-'; not 'learner'"
            )
    learner_dir = out / "learner"
    if (learner_dir / "learner.key_secret").exists():
        if not (add or keep):
            raise FileExistsError(f"{learner_dir} exists; pass --add to add actors to it")
    else:
        out.mkdir(parents=True, mode=0o700, exist_ok=True)
        learner_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        write_keypair(learner_dir, "learner")
    (learner_dir / "authorized").mkdir(mode=0o700, exist_ok=True)
    for name in actors:
        actor_dir = out / name
        complete = (actor_dir / f"{name}.key_secret").exists() and (
            learner_dir / "authorized" / f"{name}.key"
        ).exists()
        if keep and complete:
            continue
        if actor_dir.exists() and not keep:
            raise FileExistsError(f"{actor_dir} exists")
        if keep and actor_dir.exists():  # half-written by a job that died: start it over
            shutil.rmtree(actor_dir)
        actor_dir.mkdir(parents=True, mode=0o700)
        public, _ = write_keypair(actor_dir, name)
        shutil.copyfile(learner_dir / "learner.key", actor_dir / "learner.key")
        shutil.copyfile(public, learner_dir / "authorized" / f"{name}.key")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="keys", help="directory to write the keys into")
    parser.add_argument("--actors", default="actor-1,actor-2", help="comma-separated actor names")
    parser.add_argument(
        "--add", action="store_true", help="add actors to an existing learner key directory"
    )
    parser.add_argument(
        "--fleet",
        type=int,
        default=0,
        metavar="N",
        help="keys for N actor tasks named task-0 ... task-N-1 (instead of --actors); keys "
        "that exist are kept",
    )
    args = parser.parse_args(argv)
    if args.fleet < 0:
        parser.error("--fleet must be >= 0")
    try:
        if args.fleet:
            make_keys(Path(args.out), fleet_names(args.fleet), keep=True)
        else:
            make_keys(Path(args.out), [a for a in args.actors.split(",") if a], add=args.add)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    who = f"{args.out}/{FLEET_PREFIX}K for task K" if args.fleet else f"{args.out}/NAME"
    print(
        f"keys written under {args.out}/: learner: --keys {args.out}/learner; "
        f"actors: --keys {who} (copy that directory to the actor's host)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
