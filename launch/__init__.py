"""Launchers: start a learner and its actors with the engine a cluster already runs.
Each drives the engine (placement, restarts) and never reimplements it; the programs it
starts are the ordinary ``python -m learner`` and ``python -m actor``, which meet over
ZeroMQ through the launch contract (protocol/address.py, protocol/keys.py). The
trainer never imports this package. Slurm needs no Python: deploy/slurm/train.sbatch."""
