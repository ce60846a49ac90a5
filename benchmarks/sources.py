"""The data table: what the steps of a configuration read, as a typed record.

A source's name is what results.json and the key of a configuration carry; what the code
branches on (in-memory arrays walked batch by batch, the shards through the tf.data pipeline, or
one batch repeated) is a field of its record, looked up by `source_named`. No other module
compares a source's name.
"""
from __future__ import annotations

from dataclasses import dataclass

from plumbing.tables import record_named


@dataclass(frozen=True)
class Source:
    name: str
    # In-memory arrays walked batch by batch, as `fit(X, Y)` and the textbook's feed_dict loops
    # read them: passes (epochs, splits) whose set-up a step can hold.
    arrays: bool = False
    shards: bool = False       # a manifest's HDF5 shards through the tf.data pipeline

    @property
    def repeated_batch(self) -> bool:
        """One batch in memory, fed again every step: neither arrays nor shards."""
        return not (self.arrays or self.shards)


SYNTHETIC = Source("synthetic")
NUMPY = Source("numpy", arrays=True)
PIPELINE = Source("pipeline", shards=True)

SOURCES: dict[str, Source] = {s.name: s for s in (SYNTHETIC, NUMPY, PIPELINE)}


def source_named(name: str) -> Source:
    """The record of data source `name`; a user error naming the choices for an unknown one."""
    return record_named(SOURCES, name, "data")
