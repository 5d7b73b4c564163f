"""The one exception type the CLI turns into a one-line error."""


class FactoryError(Exception):
    """A problem the user can fix; the message says what to do."""
