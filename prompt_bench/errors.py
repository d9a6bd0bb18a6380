"""User-facing errors: each message says what is wrong and how to fix it."""


class PromptBenchError(Exception):
    """A bad input the user can fix; printed without a traceback."""


class ConfigError(PromptBenchError):
    """An incompatible or invalid configuration (method x backbone x head, bad values)."""


class DataError(PromptBenchError):
    """A dataset that cannot be read or split as configured."""


class HubUnavailableError(PromptBenchError):
    """A model or dataset that needs the Hugging Face hub, which cannot be reached."""


class TrainingDivergedError(PromptBenchError):
    """A run's training loss became NaN or infinite (a packed run is then dropped from its pack)."""
