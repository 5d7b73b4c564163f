"""The factory's error types. Each is a problem stated in one line (or one
line per problem) saying what to do; the CLI maps each type to its exit code
(table in the README), so a CI system can act on the kind of failure."""


class FactoryError(Exception):
    """A problem the user can fix: bad input unless a subclass says otherwise."""

    exit_code = 2


class UsageError(FactoryError):
    """A value that cannot work, found before anything is built."""

    exit_code = 2


class BuildFailed(FactoryError):
    """An element's hook (a layer phase or the assembly) failed."""

    exit_code = 3


class VerifyFailed(FactoryError):
    """The image booted but a check failed, or it did not boot."""

    exit_code = 4


class PublishFailed(FactoryError):
    """An upload did not arrive as sent, or the destination refused it."""

    exit_code = 5


class Unavailable(FactoryError):
    """Infrastructure the run needs does not answer: the container engine,
    the package mirror, a cache that is required."""

    exit_code = 6
