#!/usr/bin/env bash
# Start/stop a real one-box Slurm cluster on 127.0.0.1 for tests.
#
#   cluster.sh start DIR    create DIR, start munged + slurmctld + 3 slurmd
#                           (virtual nodes n1..n3, 4 CPUs each, partition
#                           `debug`), wait until all nodes are idle, and print
#                           `export SLURM_CONF=DIR/slurm.conf` as the last
#                           line on stdout (progress goes to stderr):
#                               eval "$(deploy/slurm/ci/cluster.sh start DIR)"
#   cluster.sh stop DIR     cancel this cluster's jobs, stop exactly the
#                           daemons recorded in DIR/pids (TERM, bounded wait,
#                           KILL), then any leftover slurmstepd/job process of
#                           this cluster.  Idempotent.
#   cluster.sh status DIR   daemons, sinfo, squeue.
#
# Everything (config, state, spool, logs, pid files, munge key and socket)
# lives inside DIR, so it never touches /etc/slurm or the system munged.
# Needs root, Debian's `slurm-wlm` and `munge` (exit 3 if missing), python3.
# munged runs as the `munge` user: when it cannot reach DIR (pytest's
# tmp_path lies under a 0700 /tmp/pytest-of-root), its files go to a private
# /tmp/cluster-sh-munge.XXXXXX instead, DIR/munge links there and stop
# removes it.
#
# Environment: CLUSTER_START_TIMEOUT (s, default 30), CLUSTER_STOP_TIMEOUT
# (s per phase, default 10).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TEMPLATE=$HERE/slurm.conf.in
START_TIMEOUT=${CLUSTER_START_TIMEOUT:-30}
STOP_TIMEOUT=${CLUSTER_STOP_TIMEOUT:-10}
NODES=(n1 n2 n3)
# Daemons live in /usr/sbin, which is not on every PATH.
PATH=$PATH:/usr/sbin:/sbin
# A stale SLURM_CONF from the caller must never point our clients elsewhere.
unset SLURM_CONF

log() { echo "cluster.sh: $*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    echo "usage: $0 {start|stop|status} DIR" >&2
    exit 2
}

require_tools() {
    local t p missing=()
    for t in slurmctld slurmd munged sbatch srun sinfo squeue scancel; do
        p=$(command -v "$t" 2>/dev/null) && [[ -f $p && -x $p ]] || missing+=("$t")
    done
    if ((${#missing[@]})); then
        echo "cluster.sh: missing ${missing[*]}: apt-get install -y --no-install-recommends slurm-wlm munge" >&2
        exit 3
    fi
    command -v python3 >/dev/null 2>&1 || die "python3 is needed"
    command -v runuser >/dev/null 2>&1 || die "runuser (util-linux) is needed"
    id munge >/dev/null 2>&1 || die "no 'munge' user (is the munge package installed?)"
    [[ $(id -u) == 0 ]] || die "must run as root (slurmd runs jobs as any user)"
}

# Is PID alive and still the daemon we started (name + DIR in its command
# line), not a recycled pid?
is_ours() {
    local name=$1 pid=$2
    [[ -r /proc/$pid/cmdline ]] || return 1
    [[ $(cat "/proc/$pid/comm" 2>/dev/null) == "$name" ]] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -e "$DIR/" -e "$(munge_dir)/"
}

# Where munged's files are: DIR/munge, or the directory it links to.
munge_dir() {
    readlink -f "$DIR/munge" 2>/dev/null || echo "$DIR/munge"
}

# Remove DIR/munge and, when it is a link, the private directory it names.
remove_munge_dir() {
    local target
    if [[ -L $DIR/munge ]]; then
        target=$(readlink "$DIR/munge")
        if [[ $target == /tmp/cluster-sh-munge.* ]]; then
            cp "$target/munged.log" "$DIR/log/munged.log" 2>/dev/null || true
            rm -rf "$target"
        fi
    fi
    rm -rf "$DIR/munge"
}

# Lines "name pid" of DIR/pids.
read_pids() {
    [[ -f $DIR/pids ]] && cat "$DIR/pids" || true
}

any_alive() {
    local name pid
    while read -r name pid; do
        [[ -n ${pid:-} ]] && is_ours "$name" "$pid" && return 0
    done < <(read_pids)
    return 1
}

# TERM the recorded daemons whose name matches $1 (a regex), wait up to
# STOP_TIMEOUT s, then KILL what is left.
term_then_kill() {
    local pattern=$1 name pid t left deadline
    local -a targets=()
    while read -r name pid; do
        [[ -n ${pid:-} && $name =~ $pattern ]] || continue
        if is_ours "$name" "$pid"; then
            targets+=("$name:$pid")
            kill -TERM "$pid" 2>/dev/null || true
        fi
    done < <(read_pids)
    ((${#targets[@]})) || return 0
    deadline=$((SECONDS + STOP_TIMEOUT))
    while :; do
        left=()
        for t in "${targets[@]}"; do
            is_ours "${t%%:*}" "${t##*:}" && left+=("$t")
        done
        ((${#left[@]})) || return 0
        if ((SECONDS >= deadline)); then
            log "still alive after ${STOP_TIMEOUT}s, sending KILL: ${left[*]}"
            for t in "${left[@]}"; do kill -KILL "${t##*:}" 2>/dev/null || true; done
            sleep 0.2
            return 0
        fi
        sleep 0.1
    done
}

# Kill what slurmd leaves behind: slurmstepd processes of this cluster (their
# environment has our SLURM_CONF) and job processes (our SLURM_CONF plus a
# SLURM_JOB_ID), with all their descendants.  The caller's own processes
# (which may have SLURM_CONF exported but no SLURM_JOB_ID) are spared.
sweep_strays() {
    # TERM, then KILL after 5 s (like KillWait).
    python3 - "$DIR/slurm.conf" 5 <<'PY'
import os, signal, sys, time
conf, timeout = sys.argv[1].encode(), float(sys.argv[2])
me = {os.getpid(), os.getppid()}

def procs():
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat", "rb") as f:
                stat = f.read()
            with open(f"/proc/{d}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")]
        ppid = int(stat[stat.rindex(b")") + 2 :].split()[1])
        out[int(d)] = (comm, ppid, env)
    return out

def alive(pid):  # a zombie counts as gone
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(") ", 1)[1][0] != "Z"
    except (OSError, IndexError):
        return False

ps = procs()
roots = {
    pid for pid, (comm, _, env) in ps.items()
    if b"SLURM_CONF=" + conf in env
    and (comm == b"slurmstepd" or any(e.startswith(b"SLURM_JOB_ID=") for e in env))
}
victims, changed = set(roots), True
while changed:  # add descendants
    changed = False
    for pid, (_, ppid, _) in ps.items():
        if ppid in victims and pid not in victims:
            victims.add(pid)
            changed = True
victims -= me
if not victims:
    sys.exit(0)
print(f"cluster.sh: killing {len(victims)} leftover job process(es): "
      + " ".join(f"{p}:{ps[p][0].decode(errors='replace')}" for p in sorted(victims)),
      file=sys.stderr)
for sig in (signal.SIGTERM, signal.SIGKILL):
    for p in victims:
        try:
            os.kill(p, sig)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + (timeout if sig == signal.SIGTERM else 2)
    while time.monotonic() < deadline:
        victims = {p for p in victims if alive(p)}
        if not victims:
            sys.exit(0)
        time.sleep(0.1)
PY
}

cmd_stop() {
    [[ -d $DIR ]] || { log "no $DIR: nothing to stop"; return 0; }
    local name pid ctld_alive=0
    while read -r name pid; do
        [[ $name == slurmctld ]] && is_ours "$name" "$pid" && ctld_alive=1
    done < <(read_pids)
    # 1. Cancel every job while slurmctld still runs, so tasks get the usual
    #    TERM, KillWait, KILL and slurmstepd cleans up after itself.
    if ((ctld_alive)) && [[ -f $DIR/slurm.conf ]]; then
        export SLURM_CONF=$DIR/slurm.conf
        if [[ -n $(timeout 5 squeue -h -o %i 2>/dev/null || true) ]]; then
            log "cancelling jobs"
            timeout 5 scancel --partition=debug 2>/dev/null || true
            local deadline=$((SECONDS + STOP_TIMEOUT))
            while ((SECONDS < deadline)) && [[ -n $(timeout 5 squeue -h -o %i 2>/dev/null || true) ]]; do
                sleep 0.2
            done
        fi
        unset SLURM_CONF
    fi
    # 2. Slurm daemons, then munged (slurm talks to munge until it exits).
    term_then_kill '^slurm(d|ctld)$'
    # 3. slurmstepd outlives slurmd by design: end what is left of our jobs.
    if [[ -f $DIR/slurm.conf ]]; then
        sweep_strays || log "warning: sweeping leftover job processes failed"
    fi
    term_then_kill '^munged$'
    if any_alive; then
        die "some daemons in $DIR/pids survived KILL"
    fi
    # A private munge directory outside DIR goes with the cluster.
    [[ -L $DIR/munge ]] && remove_munge_dir
    log "stopped ($DIR)"
}

cmd_status() {
    [[ -f $DIR/pids ]] || die "no cluster in $DIR"
    local name pid
    while read -r name pid; do
        if is_ours "$name" "$pid"; then echo "$name $pid running"; else echo "$name $pid dead"; fi
    done < <(read_pids)
    export SLURM_CONF=$DIR/slurm.conf
    timeout 5 sinfo -N -l || true
    timeout 5 squeue || true
}

# Pick N ports that are free on all addresses (Slurm binds 0.0.0.0).
free_ports() {
    python3 -c '
import socket, sys
ss = [socket.socket() for _ in range(int(sys.argv[1]))]
for s in ss:
    s.bind(("0.0.0.0", 0))
print(*[s.getsockname()[1] for s in ss])' "$1"
}

tail_logs() {
    local f
    for f in "$DIR"/log/*; do
        [[ -s $f ]] || continue
        echo "--- $f (last 15 lines)" >&2
        tail -n 15 "$f" >&2
    done
}

cmd_start() {
    require_tools
    [[ $DIR != *[[:space:]]* ]] || die "DIR must not contain whitespace: '$DIR'"
    mkdir -p "$DIR"
    DIR=$(cd "$DIR" && pwd -P)
    if any_alive; then
        die "a cluster is already running in $DIR (run: $0 stop $DIR)"
    fi
    if [[ -e $DIR/.ci-cluster ]]; then
        # A previous, stopped cluster of ours: start afresh.
        remove_munge_dir
        rm -rf "${DIR:?}"/{state,spool,run,log,slurm.conf,pids}
    elif [[ -n $(ls -A "$DIR") ]]; then
        die "$DIR is not empty and holds no cluster.sh cluster"
    fi
    touch "$DIR/.ci-cluster"

    # munged insists on secure paths: every directory on the way must be
    # searchable by munge and not writable by group/other (sticky /tmp is
    # fine); its own directory owned by munge; the key owned by munge and
    # readable by nobody else.
    chmod 0755 "$DIR"
    local mdir=$DIR/munge
    if ! runuser -u munge -- test -x "$DIR"; then
        mdir=$(mktemp -d /tmp/cluster-sh-munge.XXXXXX)
        ln -s "$mdir" "$DIR/munge"
        log "the munge user cannot reach $DIR (a parent directory is not searchable by it): munged's files are in $mdir (DIR/munge links there; stop removes it)"
    fi
    local sock=$mdir/munged.sock
    ((${#sock} < 100)) || die "munge socket path too long (${#sock} chars, unix sockets allow 107): use a shorter DIR"
    mkdir -p "$DIR"/{state,run,log} "$mdir" "${NODES[@]/#/$DIR/spool/}"
    chown munge:munge "$mdir"
    chmod 0755 "$mdir"
    (umask 077 && head -c 1024 /dev/urandom >"$mdir/munge.key")
    chown munge:munge "$mdir/munge.key"
    chmod 0400 "$mdir/munge.key"

    local ports
    read -r -a ports <<<"$(free_ports 4)"
    python3 - "$TEMPLATE" "$DIR/slurm.conf" <<PY
import sys
subs = {
    "@DIR@": "$DIR",
    "@CTLD_HOST@": "$(hostname -s)",
    "@CTLD_PORT@": "${ports[0]}",
    "@N1_PORT@": "${ports[1]}",
    "@N2_PORT@": "${ports[2]}",
    "@N3_PORT@": "${ports[3]}",
    "@MUNGE_SOCKET@": "$sock",
}
text = open(sys.argv[1]).read()
for k, v in subs.items():
    text = text.replace(k, v)
assert "@" not in "".join(l for l in text.splitlines() if not l.startswith("#")), "unsubstituted @NAME@"
open(sys.argv[2], "w").write(text)
PY
    : >"$DIR/pids"

    # From here on, a failed start stops whatever it started.
    # (A slurmd still in its first registration ignores TERM for ~10 s: do not
    # wait that long for it here.)
    trap 'rc=$?; if ((rc)); then tail_logs; log "start failed, stopping what was started"; STOP_TIMEOUT=2 cmd_stop || true; fi' EXIT

    # munged forks itself and has written its pid file when runuser returns.
    runuser -u munge -- munged \
        --socket="$sock" --key-file="$mdir/munge.key" \
        --pid-file="$mdir/munged.pid" --log-file="$mdir/munged.log" \
        --seed-file="$mdir/munged.seed" \
        </dev/null >>"$DIR/log/munged.out" 2>&1 ||
        { cat "$mdir/munged.log" >&2 2>/dev/null; die "munged did not start"; }
    echo "munged $(cat "$mdir/munged.pid")" >>"$DIR/pids"

    # Slurm daemons in the foreground (-D) under setsid, so $! is the daemon
    # itself and no terminal signal reaches it; stdio never holds the
    # caller's pipe (so `eval "$(cluster.sh start DIR)"` returns).
    export SLURM_CONF=$DIR/slurm.conf
    setsid slurmctld -D -f "$SLURM_CONF" </dev/null >>"$DIR/log/slurmctld.out" 2>&1 &
    echo "slurmctld $!" >>"$DIR/pids"
    disown
    local n
    for n in "${NODES[@]}"; do
        setsid slurmd -D -N "$n" -f "$SLURM_CONF" </dev/null >>"$DIR/log/slurmd-$n.out" 2>&1 &
        echo "slurmd $!" >>"$DIR/pids"
        disown
    done

    local deadline=$((SECONDS + START_TIMEOUT)) idle name pid
    while :; do
        while read -r name pid; do
            is_ours "$name" "$pid" || die "$name (pid $pid) exited during start-up"
        done < <(read_pids)
        idle=$(timeout 5 sinfo -h -N -p debug -o '%N %T' 2>/dev/null | grep -c ' idle$' || true)
        ((idle == ${#NODES[@]})) && break
        ((SECONDS < deadline)) ||
            die "only ${idle}/${#NODES[@]} nodes idle after ${START_TIMEOUT}s (logs in $DIR/log)"
        sleep 0.2
    done
    trap - EXIT
    log "cluster up in $DIR: slurmctld port ${ports[0]}, slurmd ports ${ports[*]:1}"
    echo "export SLURM_CONF=$DIR/slurm.conf"
}

(($# == 2)) || usage
DIR=$2
case $1 in
    start) cmd_start ;;
    stop) [[ -d $DIR ]] && DIR=$(cd "$DIR" && pwd -P); cmd_stop ;;
    status) DIR=$(cd "$DIR" && pwd -P); cmd_status ;;
    *) usage ;;
esac
