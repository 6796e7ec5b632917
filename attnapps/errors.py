"""The one exception type for errors a user can cause (bad data, bad config, missing run dir).

Entry points print it as a single line and exit non-zero; anything else is a bug and keeps its
traceback.
"""


class AttnappsError(Exception):
    """A user-caused error; its message is one line that names the file, line or key at fault."""


class DataError(AttnappsError):
    """Malformed input data. ``DataError(path, line, msg)`` reads ``path:line: msg``."""

    def __init__(self, path, line, msg):
        self.path, self.line = str(path), line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {msg}")


class ConfigError(AttnappsError):
    """A config key that does not exist or a value of the wrong type."""
