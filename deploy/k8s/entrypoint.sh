#!/bin/sh
# The image's entry point: `entrypoint.sh learner|actor [flags]`.
#
# On Kubernetes the CurveZMQ keys arrive as Secrets with flat file names (made by
# `python scripts/keys.py --fleet N --k8s-secrets FILE`), mounted read-only at
# SECRETS_DIR; this rebuilds the key directory the program reads (secrets 0600 in a 0700
# directory, as the programs insist) and execs it with --keys. Actor K of an Indexed Job
# (JOB_COMPLETION_INDEX=K) takes the pair task-K. With INSECURE=1 no keys are used.
# `entrypoint.sh run ...` runs anything else (python -m evaluate, a shell).
set -eu
role=${1:-}
[ $# -gt 0 ] && shift
SECRETS_DIR=${SECRETS_DIR:-/secrets}
KEYS_DIR=${KEYS_DIR:-/tmp/zmq-a3c-keys}
umask 077
# When this container started: the learner's startup probe waits for a log line newer.
: >"${STARTED_FILE:-/tmp/zmq-a3c-started}" 2>/dev/null || true

fail() {
    echo "entrypoint.sh: $2" >&2
    exit "$1"
}

case $role in
learner)
    if [ "${INSECURE:-0}" = 1 ]; then exec python -m learner --insecure "$@"; fi
    [ -f "$SECRETS_DIR/learner.key_secret" ] ||
        fail 2 "no learner.key_secret in $SECRETS_DIR: create the Secrets (scripts/keys.py --fleet N --k8s-secrets FILE) or set INSECURE=1"
    mkdir -p "$KEYS_DIR/authorized"
    cp "$SECRETS_DIR/learner.key" "$SECRETS_DIR/learner.key_secret" "$KEYS_DIR/" ||
        fail 3 "cannot read the keys in $SECRETS_DIR (the pod's fsGroup must own the Secret's files)"
    found=0
    for f in "$SECRETS_DIR"/authorized.*.key; do
        [ -e "$f" ] || continue
        name=${f##*/authorized.}
        cp "$f" "$KEYS_DIR/authorized/$name" || fail 3 "cannot read $f"
        found=$((found + 1))
    done
    [ "$found" -gt 0 ] || fail 2 "no authorized.*.key in $SECRETS_DIR: no actor could join"
    exec python -m learner --keys "$KEYS_DIR" "$@"
    ;;
actor)
    if [ "${INSECURE:-0}" = 1 ]; then exec python -m actor --insecure "$@"; fi
    [ -n "${JOB_COMPLETION_INDEX:-}" ] ||
        fail 2 "JOB_COMPLETION_INDEX is not set: run the actors as an Indexed Job (deploy/k8s)"
    name=task-$JOB_COMPLETION_INDEX
    [ -f "$SECRETS_DIR/$name.key_secret" ] ||
        fail 3 "no key for $name in $SECRETS_DIR: make the Secrets with --fleet N, N >= the number of actors"
    mkdir -p "$KEYS_DIR"
    cp "$SECRETS_DIR/learner.key" "$SECRETS_DIR/$name.key" "$SECRETS_DIR/$name.key_secret" "$KEYS_DIR/" ||
        fail 3 "cannot read the keys in $SECRETS_DIR (the pod's fsGroup must own the Secret's files)"
    exec python -m actor --keys "$KEYS_DIR" "$@"
    ;;
run) exec "$@" ;;
*) fail 2 "usage: entrypoint.sh learner|actor|run [flags]" ;;
esac
