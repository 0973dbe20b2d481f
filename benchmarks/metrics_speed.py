"""HD95 speed: ``nnunetv2_symtc.evaluation.metrics.case_metrics`` vs ``medpy.metric.binary.hd95``.

Builds phantom-like multi-structure volumes (sagittal, array order (left-right, superior-inferior,
anterior-posterior), spacing 3.3 x 0.6 x 0.6 mm): vertebral bodies, discs and a canal, ~15
structures, and a perturbed prediction. medpy runs once per structure on the full volume (what
a per-label loop over medpy does); ours computes Dice, HD95, ASSD and volumes of all structures.
Prints a table of times, the speed-up and the largest HD95 difference (target: >= 10x, <= 1e-6 mm).

    python benchmarks/metrics_speed.py [--shape 48 320 320] [--cases 2]
"""
import argparse
import time

import numpy as np
from scipy.ndimage import binary_dilation

from nnunetv2_symtc.evaluation.metrics import case_metrics


def phantom_like(shape, seed: int) -> np.ndarray:
    """Label map with 7 vertebral bodies, 6 discs, a canal and a cord-like rod (15 structures)."""
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape, dtype=np.float32)
    labels = np.zeros(shape, np.uint8)
    lr_centre, height = shape[0] / 2, shape[1] / 14
    top = height * 0.5
    for level in range(7):
        centre_y = top + height * 0.45 + rng.normal(0, 1)
        body = (((z - lr_centre) / (shape[0] * 0.3)) ** 2 + ((y - centre_y) / (height * 0.42)) ** 2
                + ((x - shape[2] * 0.4) / (shape[2] * 0.15)) ** 2) <= 1
        labels[body] = level + 1
        if level < 6:
            disc = (((z - lr_centre) / (shape[0] * 0.28)) ** 2 + ((y - centre_y - height * 0.5) / (height * 0.09)) ** 2
                    + ((x - shape[2] * 0.4) / (shape[2] * 0.14)) ** 2) <= 1
            labels[disc & (labels == 0)] = 101 + level
        top += height
    canal = (((z - lr_centre) / (shape[0] * 0.12)) ** 2 + ((x - shape[2] * 0.62) / (shape[2] * 0.04)) ** 2) <= 1
    labels[canal & (y > height * 0.3) & (y < shape[1] - height * 0.3)] = 200
    cord = (((z - lr_centre) / (shape[0] * 0.05)) ** 2 + ((x - shape[2] * 0.62) / (shape[2] * 0.015)) ** 2) <= 1
    labels[cord & (labels == 200)] = 201
    return labels


def perturb(labels: np.ndarray, seed: int) -> np.ndarray:
    """A prediction: shifted by 2 voxels superior-inferior, one structure dilated, boundary noise."""
    rng = np.random.default_rng(seed)
    out = np.roll(labels, 2, axis=1)
    out[binary_dilation(out == 3, iterations=2) & (out == 0)] = 3
    noise = rng.random(labels.shape) < 0.02
    out[noise & (out > 0) & (np.roll(out, 1, axis=2) == 0)] = 0
    return out


def main():
    from medpy.metric.binary import hd95 as medpy_hd95

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(48, 320, 320))
    parser.add_argument("--cases", type=int, default=2)
    args = parser.parse_args()
    spacing = (3.3, 0.6, 0.6)
    medpy_time = ours_time = 0.0
    worst = 0.0
    structures = 0
    for case in range(args.cases):
        reference = phantom_like(tuple(args.shape), case)
        prediction = perturb(reference, case)
        start = time.perf_counter()
        ours = case_metrics(reference, prediction, spacing)
        ours_time += time.perf_counter() - start
        for key, metrics in ours.items():
            r, p = reference == int(key), prediction == int(key)
            if not (r.any() and p.any()):
                continue
            start = time.perf_counter()
            expected = medpy_hd95(p, r, voxelspacing=spacing)
            medpy_time += time.perf_counter() - start
            worst = max(worst, abs(expected - metrics["HD95"]))
            structures += 1
    print(f"volumes: {args.cases} x {tuple(args.shape)}, {structures} structure comparisons, spacing {spacing} mm")
    print(f"{'method':<52} {'time s':>8} {'speed-up':>9}")
    print(f"{'medpy.metric.binary.hd95, one call per structure':<52} {medpy_time:>8.2f} {1.0:>9.1f}")
    print(f"{'case_metrics (Dice+HD95+ASSD+volumes, all structures)':<52} {ours_time:>8.2f} "
          f"{medpy_time / ours_time:>9.1f}")
    print(f"max |HD95 ours - medpy| = {worst:.3g} mm ({'ok' if worst <= 1e-6 else 'MISMATCH'})")


if __name__ == "__main__":
    main()
