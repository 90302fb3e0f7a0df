"""TensorBoard scalars of a run, in ``<run_dir>/tb/``: ``tensorboard --logdir runs`` shows
every run side by side. The JSON log stays the record; this is a view of the same
``progress`` figures (against env steps), each actor's throughput, and evaluations.

    tb = TensorBoardWriter(run_dir / "tb")
    tb.progress(fields)                  # the fields of one progress event
    tb.actors({"host-1": 5120.0}, step)  # env steps per second, per actor
    tb.evaluation(fields)                # an ``evaluation`` event's fields
    tb.confirmation(fields, step)        # the learner's own episodes before "solved"
    tb.close()

Writing is torch's ``SummaryWriter`` (the ``tensorboard`` package's event files).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

# progress field -> tag; the group before "/" is a TensorBoard section.
PROGRESS_TAGS = {
    "mean_return_100": "return/mean_100",
    "return_std_100": "return/std_100",
    "episodes": "return/episodes",
    "episodes_unseen_start": "return/episodes_unseen_start",
    "episodes_cut": "return/episodes_cut",
    "steps_per_s": "speed/env_steps_per_s",
    "trained_per_s": "speed/trained_per_s",
    "train_busy": "speed/train_busy",
    "updates": "train/updates",
    "version": "train/version",
    "policy_loss": "loss/policy",
    "value_loss": "loss/value",
    "entropy": "loss/entropy",
    "grad_norm": "loss/grad_norm",
    "grad_norm_max": "loss/grad_norm_max",
    "clip_frac": "loss/clip_frac",
    "approx_kl": "loss/approx_kl",
    "steps": "loss/optimizer_steps",
    "policy_lag_mean": "lag/mean",
    "policy_lag_max": "lag/max",
    "dropped_stale": "data/dropped_stale",
    "dropped_steps": "data/dropped_steps",
    "rejected": "data/rejected",
    "skipped_updates": "data/skipped_updates",
    "actors": "actors/live",
}
_SAFE = re.compile(r"[^A-Za-z0-9_.\-]")


class TensorBoardWriter:
    def __init__(self, directory: Path) -> None:
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: ~1 s

        self.directory = Path(directory)
        self._writer = SummaryWriter(log_dir=str(self.directory), flush_secs=10)

    def progress(self, fields: dict) -> None:
        step = int(fields.get("env_steps", 0))
        for key, value in fields.items():
            tag = PROGRESS_TAGS.get(key) or (f"other/{key}" if key not in _NOT_SCALARS else None)
            if tag is not None and _is_number(value):
                self._writer.add_scalar(tag, float(value), step)

    def actors(self, steps_per_s: dict[str, float], step: int) -> None:
        for actor_id, value in steps_per_s.items():
            self._writer.add_scalar(f"actors/steps_per_s/{_SAFE.sub('_', actor_id)}", value, step)

    def evaluation(self, fields: dict) -> None:
        step = int(fields["env_steps"])
        for key in ("mean_return", "return_std", "mean_length"):
            if _is_number(fields.get(key)):
                self._writer.add_scalar(f"eval/{key}", float(fields[key]), step)

    def confirmation(self, fields: dict, step: int) -> None:
        """The learner's own figure (``confirm/*``), apart from the actors' ``return/*``."""
        for key in ("confirm_mean_return", "confirm_return_std"):
            if _is_number(fields.get(key)):
                self._writer.add_scalar(
                    f"confirm/{key[len('confirm_') :]}", float(fields[key]), step
                )

    def close(self) -> None:
        self._writer.close()


# Progress fields that are counters of time or not figures to plot.
_NOT_SCALARS = frozenset({"env_steps", "wall_s", "policy_lag_min"})


def _is_number(value: object) -> bool:
    return (
        isinstance(value, (int, float))
        and not isinstance(value, bool)
        and math.isfinite(float(value))
    )
