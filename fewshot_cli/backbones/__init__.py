"""Embedding networks shared by the few-shot methods."""
