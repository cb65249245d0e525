"""Plain task functions `train(cfg)` and `evaluate(cfg)`; they never read HydraConfig."""
