"""Scoring and reporting robustness sweeps (the sweeps themselves run models: ``inference.robustness``).

Scores are the foreground means over structures of Dice and HD95 (mm) from ``metrics.case_metrics``.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from nnunetv2_symtc.evaluation.metrics import case_metrics


def foreground_summary(reference: np.ndarray, prediction: np.ndarray, spacing) -> Dict[str, float]:
    """Mean Dice and HD95 over structures (NaN-skipping), and the number of missed structures."""
    metrics = case_metrics(reference, prediction, spacing).values()
    dices = [m["Dice"] for m in metrics if not np.isnan(m["Dice"])]
    hd95s = [m["HD95"] for m in metrics if not np.isnan(m["HD95"])]
    return {"Dice": float(np.mean(dices)) if dices else float("nan"),
            "HD95": float(np.mean(hd95s)) if hd95s else float("nan"),
            "missed": int(sum(m["missed"] for m in metrics))}


def summarize(rows: Sequence[dict]) -> List[dict]:
    """Mean Dice / HD95 over cases per (perturbation, direction, amount), in sweep order."""
    groups: Dict[tuple, List[dict]] = {}
    for row in rows:
        groups.setdefault((row["perturbation"], row["direction"], row["amount"], row["unit"]), []).append(row)
    out = []
    for (kind, direction, amount, unit), members in groups.items():
        dice = [r["Dice"] for r in members if not np.isnan(r["Dice"])]
        hd95 = [r["HD95"] for r in members if not np.isnan(r["HD95"])]
        out.append({"perturbation": kind, "direction": direction, "amount": amount, "unit": unit,
                    "cases": len(members), "Dice": float(np.mean(dice)) if dice else float("nan"),
                    "HD95": float(np.mean(hd95)) if hd95 else float("nan"),
                    "missed": int(sum(r["missed"] for r in members))})
    return out


def plot_robustness(summary: Sequence[dict], path) -> Path:
    """PNG: one column per perturbation kind, Dice (top) and HD95 mm (bottom) against the amount."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = list(dict.fromkeys(r["perturbation"] for r in summary))
    if not kinds:
        raise ValueError("nothing to plot: the sweep has no rows")
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7), squeeze=False)
    for column, kind in enumerate(kinds):
        rows = [r for r in summary if r["perturbation"] == kind]
        for direction in dict.fromkeys(r["direction"] for r in rows):
            line = sorted((r for r in rows if r["direction"] == direction), key=lambda r: r["amount"])
            amounts = [r["amount"] for r in line]
            for row_index, metric in enumerate(("Dice", "HD95")):
                axes[row_index, column].plot(amounts, [r[metric] for r in line], marker="o", label=direction)
        unit = rows[0]["unit"]
        axes[0, column].set_title(kind)
        axes[0, column].set_ylabel("mean foreground Dice")
        axes[1, column].set_ylabel("mean HD95 (mm)")
        axes[1, column].set_xlabel(f"{kind} ({unit})")
        axes[0, column].legend(fontsize=8)
        for ax in axes[:, column]:
            ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_rows(rows: Sequence[dict], path) -> Path:
    """CSV of sweep rows (or summary rows)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path
