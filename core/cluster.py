"""Which scheduler task this process is, for log lines: Slurm's ids when the process
runs inside a Slurm job step. Read from the environment only; nothing is set here.

Bound on every log line of a learner or actor started by ``srun`` (``logs.configure(...,
**cluster.ids())``), so that ``jq 'select(.slurm_procid==3)'`` finds one task's lines in
a run directory that every task of a job writes into.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

# Slurm's per-task variables (srun sets them in every task): the log key for each.
SLURM_IDS = {
    "SLURM_JOB_ID": "slurm_job_id",
    "SLURM_STEP_ID": "slurm_step_id",
    "SLURM_PROCID": "slurm_procid",
    "SLURMD_NODENAME": "slurm_node",
}


def ids(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The scheduler ids of this process ({} outside a Slurm step)."""
    env = os.environ if environ is None else environ
    if "SLURM_STEP_ID" not in env:  # a batch script's own shell is not a task
        return {}
    return {key: env[var] for var, key in SLURM_IDS.items() if var in env}
