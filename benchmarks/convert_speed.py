"""Conversion time per case for SPIDER-format phantom data (``symtc convert spider``).

Writes phantom patients as a SPIDER folder (t1 + t2, stored in LPS so the converter must reorient),
then times ``convert_spider`` serially and with ``-np`` processes, for the tiny test configuration
and the default (realistic: 15 x ~400 x ~350 voxels) one. Prints a table; the speed-up column is a
ratio measured within one run, so it stays meaningful on a busy machine.

    python benchmarks/convert_speed.py --patients 6 -np 2
"""
import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from nnunetv2_symtc.dataset_conversion import convert_spider
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spider


def _time_conversion(source: Path, raw_dir: Path, dataset_id: int, labels: str, num_processes: int) -> float:
    start = time.perf_counter()
    convert_spider(source, dataset_id, labels=labels, raw_dir=raw_dir, num_processes=num_processes,
                   **({"max_level": 8} if labels == "levels" else {}))
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patients", type=int, default=6, help="phantom patients (2 series each)")
    parser.add_argument("-np", type=int, default=2, help="processes for the parallel run")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    configs = {"tiny": PhantomConfig.tiny(), "default": PhantomConfig()}
    rows = []
    with tempfile.TemporaryDirectory(prefix="symtc-convert-bench-") as tmp:
        tmp = Path(tmp)
        for name, config in configs.items():
            source = tmp / f"SPIDER_{name}"
            subjects = [(pid, generate_subject(pid, config)) for pid in range(1, args.patients + 1)]
            write_spider(source, subjects, sequences=("t1", "t2"), validation_pids=(args.patients,))
            voxels = int(np.mean([np.prod(s.images["t2"].shape) for _, s in subjects]))
            cases = 2 * args.patients
            for labels in ("semantic", "levels"):
                serial = _time_conversion(source, tmp / f"raw_{name}_{labels}_1", 1, labels, 1)
                parallel = _time_conversion(source, tmp / f"raw_{name}_{labels}_n", 2, labels, args.np)
                rows.append((name, labels, cases, voxels, serial / cases, parallel / cases, serial / parallel))
    header = ("config", "labels", "cases", "voxels/case", "s/case -np 1", f"s/case -np {args.np}", "speed-up")
    print(" | ".join(f"{h:>14}" for h in header))
    for name, labels, cases, voxels, serial, parallel, speedup in rows:
        print(" | ".join([f"{name:>14}", f"{labels:>14}", f"{cases:>14d}", f"{voxels:>14d}", f"{serial:>14.3f}",
                          f"{parallel:>14.3f}", f"{speedup:>14.2f}"]))
    print(f"({os.cpu_count()} CPU cores; the parallel runs include starting {args.np} spawned processes)")


if __name__ == "__main__":
    main()
