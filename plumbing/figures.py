"""PNG figures for every package: matplotlib's Agg backend (no display needed) and
`save_figure`, which writes through a temporary file and a rename, so an existing figure is
never left half-written."""
from __future__ import annotations

import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: no display on a server or in CI
import matplotlib.pyplot as plt  # noqa: E402

from plumbing.atomic import atomic_path  # noqa: E402

__all__ = ["plt", "save_figure"]


def save_figure(fig, path: str | os.PathLike, dpi: int = 110) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path, keep_suffix=True, fsync=False) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
