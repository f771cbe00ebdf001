"""The one exception of the local stack."""

from __future__ import annotations


class StackError(Exception):
    """A stack operation failed.

    The message names the service, says what went wrong and, where it helps, what to do next
    (a package to install, a port to free) and the last lines of the service's log.
    """
