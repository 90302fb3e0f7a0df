"""The actor role: step vector environments with the newest weights it has and stream
rollouts (or, for gradient-parallel A3C, gradients) to the learner. Run it with
``python -m actor --learner tcp://HOST:PORT``."""
