"""The one exception tree. Every error the service raises on purpose is an
AggregatorError; its message is one line that names what was wrong."""

from aggregator.model import FileStatus


def first_line(problem: object) -> str:
    """What went wrong, in one line: the first line of a message, or the
    error's repr when it has no message."""
    return (str(problem).splitlines() or [repr(problem)])[0]


class AggregatorError(Exception):
    """Base of every error raised on purpose by the service."""


class ConfigError(AggregatorError):
    """config.toml (or a command-line option) is unusable."""


class SeedError(AggregatorError):
    """One seed file could not be read or holds no items.

    `status` is what `aggregator sources` shows for the file: SKIPPED when the
    file is not a news page (empty, binary, unknown layout), FAILED when it
    could not be read at all."""

    def __init__(self, message: str, status: FileStatus = FileStatus.SKIPPED):
        super().__init__(message)
        self.status = status


class StorageError(AggregatorError):
    """The database refused or failed an operation."""


class NotFound(AggregatorError):
    """A requested feed, tag or item does not exist."""


class BadRequest(AggregatorError):
    """A request parameter is out of range or malformed."""
