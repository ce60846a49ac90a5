"""The one exception type for user errors (bad input, bad arguments).

Command-line entry points catch it and print its message as one line with exit code 2,
so a wrong path or a corrupt file never ends in a bare traceback.
"""
from __future__ import annotations


class DataError(Exception):
    """Bad input named in one line: which file or value, and what is wrong with it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self):  # keep it picklable across worker processes
        return (type(self), (self.message,))
