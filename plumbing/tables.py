"""A record looked up in its table by name, with the one error a user sees for a name the table
lacks (modes, tasks, data sources, precisions, presets are each such a table)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from plumbing.errors import UserError

Record = TypeVar("Record")


def record_named(table: Mapping[str, Record], name: str, what: str) -> Record:
    """`table[name]`; for a name it lacks, a UserError "unknown <what> '<name>': expected one of
    <its names>"."""
    try:
        return table[name]
    except KeyError:
        raise UserError(f"unknown {what} {name!r}: expected one of {', '.join(table)}") from None
