# The front door. Every target creates the virtual environment first if it is missing.
#   make run            train CartPole-v1 with a learner and 2 local actors until solved
#   make test           the whole test suite (what CI runs)
#   make run-learner    a learner waiting for external actors (HOST=0.0.0.0 ARGS="--keys keys/learner")
#   make run-actor LEARNER=tcp://HOST:PORT ARGS="--keys keys/NAME"   (or INSECURE=1 on both)
#   make eval RUN=runs/<run>     play the run's newest checkpoint, with video
#   make plot RUNS="runs/a runs/b"   reward curves in one PNG
#   make tensorboard             TensorBoard over every run in runs/
#   make slurm-run               the learner + actors as one Slurm job (README, On a Slurm cluster)
#   make ray-run / make k8s-keys on a Ray cluster; keys for Kubernetes (README)
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# torch is pinned here (not in pyproject.toml) so that on machines with a local CPU
# wheel pip takes it instead of downloading a multi-GB CUDA build. Override with
# `make TORCH_SPEC=torch ...` to let pip choose (e.g. a CUDA build on a GPU host); a
# changed TORCH_SPEC re-runs the install (it is recorded in $(VENV)/.torch-spec), which
# changes nothing if the torch there already satisfies it: `make clean` first to
# replace a CPU build with a CUDA one.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed
TORCH_STAMP := $(VENV)/.torch-spec

# Not ?=: a shell's own ENV (sh and ksh name their start-up file with it) must not
# become the gymnasium env. `make run ENV=Pendulum-v1` still chooses.
ENV = CartPole-v1
# CartPole: the fastest configuration measured (see README, Benchmarks); elsewhere the
# env's preset in configs/ chooses (Atari: appo; other envs: ppo), else the built-in a2c.
# ALGO=a2c, a3c, ppo, ... to choose yourself (with the preset's settings for it).
ALGO ?= $(if $(filter CartPole-v1,$(ENV)),a3c-grad,)
SEED ?= 1
ACTORS ?= 2
PORT ?= 5555
HOST ?= 127.0.0.1
LEARNER ?= tcp://127.0.0.1:5555
# INSECURE=1: run-learner binds and run-actor follows beyond loopback without keys
# (trusted networks only; both refuse otherwise).
INSECURE ?=
ARGS ?=

.PHONY: venv run run-learner run-actor eval plot tensorboard test test-fast lint format keys slurm-run slurm-cluster-up slurm-cluster-down ray-run k8s-keys compare bench-memory bench-solve bench-startup bench-throughput bench-gpu bench-atari bench-e2e bench-lag staleness soak clean FORCE

venv: $(STAMP)

$(TORCH_STAMP): FORCE
	@mkdir -p $(VENV)
	@echo '$(TORCH_SPEC)' | cmp -s - $@ || echo '$(TORCH_SPEC)' > $@

$(STAMP): pyproject.toml Makefile $(TORCH_STAMP)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev,report]"
	touch $(STAMP)

run: venv
	$(PY) -m learner --env $(ENV) $(if $(ALGO),--algo $(ALGO)) --seed $(SEED) --actors $(ACTORS) $(ARGS)

run-learner: venv
	$(PY) -m learner --env $(ENV) $(if $(ALGO),--algo $(ALGO)) --seed $(SEED) --actors 0 --host $(HOST) --port $(PORT) $(if $(filter 1,$(INSECURE)),--insecure) $(ARGS)

run-actor: venv
	$(PY) -m actor --learner $(LEARNER) $(if $(filter 1,$(INSECURE)),--insecure) $(ARGS)

# ARGS e.g. "--episodes 20 --deterministic"; the video lands in $(RUN)/eval/.
RUN ?=
eval: venv
	@test -n "$(RUN)" || { echo 'usage: make eval RUN=runs/<run dir> [ARGS="--episodes 20"]'; exit 2; }
	$(PY) -m evaluate $(RUN) --video $(ARGS)

RUNS ?=
plot: venv
	@test -n "$(RUNS)" || { echo 'usage: make plot RUNS="runs/a runs/b" [ARGS="--out plot.png"]'; exit 2; }
	$(PY) -m scripts.plot $(RUNS) $(ARGS)

tensorboard: venv
	$(VENV)/bin/tensorboard --logdir runs $(ARGS)

test: venv
	$(PY) -m pytest -q

test-fast: venv
	$(PY) -m pytest -q -m "not slow"

lint: venv
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: venv
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis *.egg-info

# ARGS="--add" adds actors to existing keys.
NAMES ?= actor-1,actor-2
keys: venv
	$(PY) scripts/keys.py --out keys --actors $(NAMES) $(ARGS)

# One heterogeneous Slurm job: the learner (component 0) and SLURM_ACTORS actor tasks
# (component 1) over SLURM_NODES nodes, encrypted with keys made for the job in its run
# directory (deploy/slurm/train.sbatch says every setting). The checkout and .venv must
# be on a filesystem every node sees. E.g. make slurm-run SLURM_ACTORS=64 SLURM_NODES=4
# SLURM_ARGS="--gres=gpu:1 --partition=gpu" ARGS="--max-env-steps 5000000"
SLURM_ACTORS ?= 4
SLURM_NODES ?= 2
SLURM_ARGS ?=
slurm-run: venv
	@command -v sbatch >/dev/null || { echo "sbatch not found: run this on a Slurm login node"; exit 2; }
	mkdir -p runs
	ENV_ID=$(ENV) ALGO=$(ALGO) LEARNER_ARGS="--seed $(SEED) $(ARGS) $$LEARNER_ARGS" REPO="$${REPO:-$(CURDIR)}" \
	  sbatch --output=runs/slurm-%j.out $(SLURM_ARGS) : --nodes=$(SLURM_NODES) --ntasks=$(SLURM_ACTORS) deploy/slurm/train.sbatch

# A one-box Slurm cluster on 127.0.0.1 (three virtual nodes) to try slurm-run on, as the
# tests do; `eval "$$(make -s slurm-cluster-up)"` sets SLURM_CONF for this shell.
SLURM_CLUSTER ?= /tmp/zmq-a3c-slurm
slurm-cluster-up:
	@out=$$(deploy/slurm/ci/cluster.sh start $(SLURM_CLUSTER)) || { echo "$$out" >&2; exit 1; }; \
	  echo "$$out" | tail -n 1
slurm-cluster-down:
	deploy/slurm/ci/cluster.sh stop $(SLURM_CLUSTER)

# On a Ray cluster (RAY_ADDRESS, or a head on this machine): the learner and RAY_ACTORS
# actors as Ray actors that Ray places and restarts (README, On a Ray cluster).
# RAY_ARGS: the launcher's own flags (--address, --insecure, --learner-gpus, --actor-args ...).
RAY_ACTORS ?= 2
RAY_ARGS ?=
ray-run: venv
	$(PY) -m pip install -q -e ".[ray]"
	$(PY) -m launch.ray --actors $(RAY_ACTORS) $(RAY_ARGS) -- --env $(ENV) $(if $(ALGO),--algo $(ALGO)) --seed $(SEED) $(ARGS)

# Kubernetes: keys for K8S_ACTORS actors as two Secrets in keys/k8s/secrets.yaml (then
# kubectl apply -f it, and kubectl apply -k deploy/k8s/overlays/<overlay>).
K8S_ACTORS ?= 4
k8s-keys: venv
	$(PY) scripts/keys.py --out keys/k8s --fleet $(K8S_ACTORS) --k8s-secrets keys/k8s/secrets.yaml

# Every algorithm, 5 seeds each, on CartPole-v1 then Acrobot-v1 (reports in
# runs/compare-<time>/; up to an hour on 2 cores). ARGS applies to both.
COMPARE_ALGOS ?= a2c,a3c,a3c-grad,impala,ppo,appo
compare: venv
	$(PY) -m scripts.compare --algos $(COMPARE_ALGOS) --max-seconds 60 $(ARGS)
	$(PY) -m scripts.compare --env Acrobot-v1 --algos $(COMPARE_ALGOS) --max-seconds 60 $(ARGS)

# The memory benchmark: CartPole without velocities (zmq_a3c/CartPoleNoVel-v1), every
# algorithm feed-forward and then with an LSTM core, same seeds and budget (reports in
# runs/memory-ff/ and runs/memory-lstm/). ARGS applies to both, e.g. "--seeds 1".
MEMORY_ALGOS ?= a2c,a3c,a3c-grad,impala,appo,ppo
bench-memory: venv
	$(PY) -m scripts.compare --env zmq_a3c/CartPoleNoVel-v1 --algos $(MEMORY_ALGOS) --seeds 1,2 --max-seconds 60 --out runs/memory-ff $(ARGS)
	$(PY) -m scripts.compare --env zmq_a3c/CartPoleNoVel-v1 --algos $(MEMORY_ALGOS) --seeds 1,2 --max-seconds 60 --out runs/memory-lstm --extra "--core lstm" $(ARGS)

# Time to solve ENV (CartPole-v1 unless given; Acrobot-v1, LunarLander-v3, Pendulum-v1,
# HalfCheetah-v5) against Stable-Baselines3 A2C and PPO with rl-zoo's settings for it, ours
# with the env's preset (installs the optional bench extra). ARGS e.g. "--seeds 1,2,3".
bench-solve: venv
	$(PY) -m pip install -q -e ".[bench]"
	$(PY) -m scripts.bench_solve $(if $(ENV),--env $(ENV)) $(ARGS)

# A whole run's seconds beyond its training (start-up, shutdown); ARGS e.g. "--source /tmp/old".
bench-startup: venv
	$(PY) -m scripts.bench_startup $(ARGS)

# Actor env steps/s against the raw limit, wire cost per batch, learner samples/s.
bench-throughput: venv
	$(PY) -m scripts.bench_throughput $(ARGS)

# How each async algorithm (and the appo variants) holds up as the policy lag grows (report in docs/staleness/).
staleness: venv
	$(PY) -m scripts.staleness $(ARGS)

# The policy lag many local actors give each async algorithm, with and without --async-gather.
bench-lag: venv
	$(PY) -m scripts.bench_lag $(ARGS)

# Atari: actor env steps/s against the raw emulator, bytes per transition, the CNN learner.
bench-atari: venv
	$(PY) -m scripts.bench_atari $(ARGS)

# End to end: a learner and external actors (Pong by default), before/after env groups;
# ARGS="--sf-python PATH" adds Sample Factory's APPO in the same go.
bench-e2e: venv
	$(PY) -m scripts.bench_e2e $(ARGS)

# On a GPU machine: Pong to +18 with 14 actors, and the scaling study (README, GPU).
bench-gpu: venv
	$(PY) -m scripts.bench_gpu $(ARGS)

# Random actor kills, freezes and restarts plus one learner kill-and-resume; CI runs 60 s.
SOAK_SECONDS ?= 60
soak: venv
	$(PY) -m scripts.soak --seconds $(SOAK_SECONDS) $(ARGS)

FORCE:
