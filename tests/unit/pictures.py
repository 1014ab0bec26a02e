"""Checks on written pictures: a PNG that decodes, at the size asked for, with a drawing."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import numpy as np

DPI = 110  # streamae.evaluation.plots saves at this resolution


def assert_picture(path: Path, figsize: tuple[float, float]) -> np.ndarray:
    """``path`` decodes as a PNG of ``figsize`` inches at :data:`DPI` and is not blank;
    returns the pixels (rows, columns, RGBA)."""
    pixels = matplotlib.image.imread(path, format="png")
    width, height = (round(inches * DPI) for inches in figsize)
    assert pixels.shape[:2] == (height, width), f"{path}: {pixels.shape[:2]}, not {(height, width)}"
    colours = np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)
    assert len(colours) > 16, f"{path}: {len(colours)} colours, a blank picture"
    return pixels
