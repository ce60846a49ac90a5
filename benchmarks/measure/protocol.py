"""The line a benchmark worker prints per configuration, ``RESULT <JSON record>``: the worker
writes it (`result_line`), the runner and the cluster runner read it (`read_results`)."""
from __future__ import annotations

import json

RESULT_MARK = "RESULT "


def result_line(record: dict) -> str:
    """One configuration's record as the line a worker prints."""
    return RESULT_MARK + json.dumps(record)


def read_result(line: str) -> dict | None:
    """The record a result line holds; None for any other line, or one cut short (a worker killed
    while printing it)."""
    if not line.startswith(RESULT_MARK):
        return None
    try:
        record = json.loads(line[len(RESULT_MARK):])
    except ValueError:
        return None
    return record if isinstance(record, dict) else None


def read_results(output: str) -> list[dict]:
    """Every whole record in a worker's output, in the order printed."""
    return [record for record in map(read_result, output.splitlines()) if record is not None]
