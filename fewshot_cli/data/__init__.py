"""Datasets as uint8 tensors, fixed class splits, and the episode sampler."""
