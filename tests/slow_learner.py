"""The real learner with every update made ``SECONDS`` longer: a deliberately slow
learner for the tests that need one (a flood the learner cannot keep up with; a run
that must outlast two kills). Injected here, by the tests, rather than being a flag of
the learner's.

    python -m tests.slow_learner SECONDS [learner flags ...]

What is slowed is ``Updater.compute``, the step that runs on the training thread: the
loop keeps answering actors meanwhile, as it does when an update is genuinely slow.
"""

from __future__ import annotations

import sys
import time

from learner import __main__ as learner_main
from learner.updates import Updater


def main(argv: list[str]) -> int:
    delay = float(argv[0])
    compute = Updater.compute

    def slow_compute(self, release, batch):
        done = compute(self, release, batch)
        time.sleep(delay)
        return done

    Updater.compute = slow_compute
    return learner_main.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
