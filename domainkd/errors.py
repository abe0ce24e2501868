"""The one exception type users see: a single sentence naming the problem and the fix."""


class DomainKDError(Exception):
    """A problem the user can fix; its message is one sentence saying what and how.

    The CLI prints the message (no traceback) and exits with status 2.
    """
