"""A site's channels in their colours and its composite as one PNG (`show`)."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.colors import LinearSegmentedColormap

from data_pipeline.constants import CHANNEL_NAMES, CHANNELS  # noqa: E402
from data_pipeline.images import RGB_MAP, convert_tensor_to_rgb  # noqa: E402
from plumbing.figures import plt, save_figure


def channel_colormap(channel: int) -> LinearSegmentedColormap:
    """Black to the channel's rxrx1-utils colour (the book's figure 3.11 style)."""
    colour = np.asarray(RGB_MAP[channel]["rgb"]) / 255.0
    return LinearSegmentedColormap.from_list(f"w{channel}", [(0, 0, 0), tuple(colour)])


def plot_site(site: np.ndarray, title: str, path: str | os.PathLike) -> Path:
    """(S, S, 6) uint8 site -> one PNG: six channels in their colours + the RGB composite; an
    (S, S, 3) composite (WILDS layout) -> the composite alone."""
    if site.shape[-1] == 3:
        fig, ax = plt.subplots(1, 1, figsize=(4, 4.4))
        ax.imshow(site)
        ax.set_axis_off()
        fig.suptitle(f"{title} (composite)")
        return save_figure(fig, path)
    fig, axes = plt.subplots(1, 7, figsize=(21, 3.4))
    for ax, channel in zip(axes, CHANNELS):
        ax.imshow(site[:, :, channel - 1], cmap=channel_colormap(channel), vmin=0,
                  vmax=RGB_MAP[channel]["range"][1])
        ax.set_title(f"w{channel}: {CHANNEL_NAMES[channel]}", fontsize=8)
    axes[-1].imshow(convert_tensor_to_rgb(site))
    axes[-1].set_title("composite (rxrx1-utils)", fontsize=8)
    for ax in axes:
        ax.set_axis_off()
    fig.suptitle(title)
    return save_figure(fig, path)
