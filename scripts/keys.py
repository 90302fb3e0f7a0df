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

For Kubernetes, the same keys as two Secrets (deploy/k8s mounts them):

    python scripts/keys.py --out keys/k8s --fleet 8 --k8s-secrets keys/k8s/secrets.yaml
    kubectl apply -f keys/k8s/secrets.yaml

``zmq-a3c-learner-keys`` (the learner's pair, the actors' public keys) and
``zmq-a3c-actor-keys`` (the learner's public key, every actor's pair).
"""

from __future__ import annotations

import argparse
import base64
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.keys import FLEET_PREFIX, fleet_names, make_keys, secret_files  # noqa: E402

K8S_SECRETS = ("zmq-a3c-learner-keys", "zmq-a3c-actor-keys")


def k8s_secrets(out: Path, actors: list[str]) -> str:
    """Two Kubernetes Secret manifests (YAML) holding the keys in ``out``."""
    docs = []
    for name, files in zip(K8S_SECRETS, secret_files(out, actors), strict=True):
        lines = [
            "apiVersion: v1",
            "kind: Secret",
            "metadata:",
            f"  name: {name}",
            "  labels:",
            "    app.kubernetes.io/name: zmq-a3c",
            "type: Opaque",
            "data:",
        ]
        lines += [f"  {k}: {base64.b64encode(v).decode()}" for k, v in sorted(files.items())]
        docs.append("\n".join(lines) + "\n")
    return "---\n".join(docs)


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
    parser.add_argument(
        "--k8s-secrets",
        default="",
        metavar="FILE",
        help="with --fleet: also write the keys as two Kubernetes Secrets to FILE (mode 0600)",
    )
    args = parser.parse_args(argv)
    if args.fleet < 0:
        parser.error("--fleet must be >= 0")
    if args.k8s_secrets and not args.fleet:
        parser.error("--k8s-secrets needs --fleet N")
    try:
        if args.fleet:
            make_keys(Path(args.out), fleet_names(args.fleet), keep=True)
        else:
            make_keys(Path(args.out), [a for a in args.actors.split(",") if a], add=args.add)
    except (ValueError, FileExistsError) as exc:
        parser.error(str(exc))
    if args.k8s_secrets:
        fd = os.open(args.k8s_secrets, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to a file already there
        with os.fdopen(fd, "w") as f:
            f.write(k8s_secrets(Path(args.out), fleet_names(args.fleet)))
        print(f"Kubernetes Secrets {', '.join(K8S_SECRETS)}: kubectl apply -f {args.k8s_secrets}")
    who = f"{args.out}/{FLEET_PREFIX}K for task K" if args.fleet else f"{args.out}/NAME"
    print(
        f"keys written under {args.out}/: learner: --keys {args.out}/learner; "
        f"actors: --keys {who} (copy that directory to the actor's host)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
