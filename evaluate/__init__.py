"""``python -m evaluate RUN_DIR``: play a trained policy from a run's checkpoint, report
its returns, and record video. A third role beside ``learner/`` and ``actor/``: it reads
what the learner wrote (checkpoints) and plays with core/evaluation.py; no sockets."""
