"""User-facing errors: one line naming the problem and the fix, never a traceback."""


class StnlabError(RuntimeError):
    """An error the user can fix (input, configuration): the command-line entry points print it as one line."""


class DataError(StnlabError):
    """The dataset (archives, CSVs, images or cache) is missing or malformed."""


class ConfigError(StnlabError, ValueError):
    """A configuration value is invalid."""


def first_line(error: BaseException, limit: int | None = None) -> str:
    """The first line of ``error``'s message (at most ``limit`` characters; its type's name when it has none): what
    a one-line report of an exception from a library shows of it."""
    return (str(error).strip().splitlines() or [type(error).__name__])[0][:limit]


def described(error: BaseException, limit: int | None = None) -> str:
    """``Type: first line of the message`` (the type alone when there is none): a one-line report of an exception
    whose type says what went wrong (a library's, a bug's)."""
    name = type(error).__name__
    return f"{name}: {first_line(error, limit)}" if str(error).strip() else name
