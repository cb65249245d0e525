"""fewshot-cli: a config-driven training CLI for few-shot image classification."""

__version__ = "0.1.0"
