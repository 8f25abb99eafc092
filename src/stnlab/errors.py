"""User-facing errors: one line naming the problem and the fix, never a traceback."""


class StnlabError(RuntimeError):
    """An error caused by input or configuration that the user can fix.

    The message is printed as one line by the command-line entry points.
    """


class DataError(StnlabError):
    """The dataset (archives, CSVs, images or cache) is missing or malformed."""


class ConfigError(StnlabError, ValueError):
    """A configuration value is invalid."""
