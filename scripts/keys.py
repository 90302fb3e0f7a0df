"""Create CurveZMQ keys for a learner and its actors (``make keys``).

    python scripts/keys.py --out keys --actors actor-1,actor-2

writes

    keys/learner/             give to the learner:  --keys keys/learner
        learner.key, learner.key_secret, authorized/actor-1.key, authorized/actor-2.key
    keys/actor-1/             copy to actor-1's host: --keys keys/actor-1
        learner.key, actor-1.key, actor-1.key_secret

Secret files are created mode 0600 and directories 0700. To admit another actor
later, run again with ``--actors NEW --add``: existing keys are kept.
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


def make_keys(out: Path, actors: list[str], add: bool = False) -> None:
    for name in actors:
        if not NAME.match(name) or name == "learner":
            raise ValueError(
                f"bad actor name {name!r}: letters, digits, '.', '_', '-'; not 'learner'"
            )
    learner_dir = out / "learner"
    if (learner_dir / "learner.key_secret").exists():
        if not add:
            raise FileExistsError(f"{learner_dir} exists; pass --add to add actors to it")
    else:
        learner_dir.mkdir(parents=True, mode=0o700, exist_ok=True)
        write_keypair(learner_dir, "learner")
    (learner_dir / "authorized").mkdir(mode=0o700, exist_ok=True)
    for name in actors:
        actor_dir = out / name
        if actor_dir.exists():
            raise FileExistsError(f"{actor_dir} exists")
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
    args = parser.parse_args(argv)
    try:
        make_keys(Path(args.out), [a for a in args.actors.split(",") if a], add=args.add)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    print(
        f"keys written under {args.out}/: learner: --keys {args.out}/learner; "
        f"actors: --keys {args.out}/NAME (copy that directory to the actor's host)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
