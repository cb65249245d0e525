"""User-facing errors: each one carries a single sentence saying which value is wrong and what is allowed.

The CLI prints these without a traceback; anything else is a bug and keeps its traceback.
"""


class FewShotError(Exception):
    """Base class of errors caused by the user's input (config, data, checkpoint)."""


class ConfigError(FewShotError):
    """A config value is outside what the code supports (e.g. n_way larger than the split)."""


class DatasetError(FewShotError):
    """A dataset is missing, empty, laid out wrongly or holds an unreadable file."""


class CheckpointError(FewShotError):
    """A checkpoint is missing, unreadable or names code outside this package."""


class NonFiniteLossError(FewShotError):
    """Training produced a NaN or infinite loss."""
