"""The measurements drawn on a mid-sagittal slice: a PNG with the level colours, the height and
canal lines of every level and their values (mm)."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from nnunetv2_symtc.inference.outputs import snapshot_overlay, snapshot_slice
from nnunetv2_symtc.measurement.definitions import SpineMeasurements

DRAWN_FIELDS = ("body_middle_height_mm", "disc_middle_height_mm", "canal_ap_body_mm", "canal_ap_disc_mm")
"""The lines drawn, with their values; the other values are in the tables."""
LINE_COLOURS = {"body": "yellow", "disc": "cyan", "canal": "magenta"}


def draw_measurements(path: Path, semantic_pir: np.ndarray, instance_pir: np.ndarray, spacing_zyx: Sequence[float],
                      measurements: SpineMeasurements) -> int:
    """PNG of the mid-sagittal slice (``outputs.snapshot_slice``) of PIR masks: the semantic mask
    in grey, the levels in colour, and ``DRAWN_FIELDS`` as lines with their values (each level's
    lines come from its own slice, projected). Returns the slice index."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    z = snapshot_slice(semantic_pir)
    height, width = semantic_pir.shape[1] * spacing_zyx[1], semantic_pir.shape[2] * spacing_zyx[2]
    fig, ax = plt.subplots(figsize=(5, 5 * height / max(width, 1e-6)), dpi=120)
    # Pixel centres sit at plane coordinates (column * spacing, -row * spacing).
    extent = (-spacing_zyx[2] / 2, width - spacing_zyx[2] / 2, height - spacing_zyx[1] / 2, -spacing_zyx[1] / 2)
    ax.imshow(semantic_pir[z] > 0, cmap="gray", extent=extent, vmin=0, vmax=2)
    ax.imshow(snapshot_overlay(instance_pir[z], alpha=0.35), extent=extent, interpolation="nearest")
    for row in measurements.levels:
        for name in DRAWN_FIELDS:
            if name not in row.segments:
                continue
            (a0, s0), (a1, s1) = row.segments[name]
            colour = LINE_COLOURS[name.split("_")[0]]
            ax.plot([a0, a1], [-s0, -s1], color=colour, linewidth=1)
            ax.text(max(a0, a1) + 1.5, -(s0 + s1) / 2, f"{row.values[name]:.1f}", color=colour, fontsize=5,
                    va="center")
        if "body_middle_height_mm" in row.segments:
            (a0, s0), _ = row.segments["body_middle_height_mm"]
            ax.text(a0 - 22, -s0 - 8, row.level, color="white", fontsize=6, fontweight="bold")
    lordosis = "-" if measurements.lumbar_lordosis_deg is None else f"{measurements.lumbar_lordosis_deg:.1f} deg"
    ax.set_title(f"{measurements.case}: heights (yellow body, cyan disc), canal (magenta) in mm; "
                 f"lordosis {lordosis}", fontsize=5)
    ax.set_axis_off()
    fig.savefig(path, bbox_inches="tight")
    plt.close(fig)
    return z
