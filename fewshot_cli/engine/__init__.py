"""Training loop, evaluator, checkpoints and run outputs."""
