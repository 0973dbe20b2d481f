"""Learning curves on the phantom: held-out Dice against gradient steps for every trainer of the package.

Data (shared with ``ssm_augment_effect.py``): ``--train-patients`` phantom patients in SSMSpine
format (512x512 mid-sagittal slices, L1-S1 bodies and the five discs below L1) plus
``--test-patients`` held-out ones, converted by the SSMSpine converter; an SSM-expanded copy is
made with ``symtc ssm-augment`` (``--shapes`` per training case and fold). nnU-Net plans the
source once at ``--downsample`` x coarser in-plane spacing (a CPU budget) and both datasets are
preprocessed with that one plan. Every arm trains fold 0 (the same 8 training patients) with the
same plan, ``--iterations`` gradient steps and the same seeds; every ``--eval-every`` steps the
current weights predict the held-out Test patients through nnU-Net's predictor (resampled back to
512x512) and Dice is recorded per structure.

Arms (``--arms``; default all):
  ce            nnUNetTrainer with our anatomy-safe augmentation (the CE baseline: it differs from
                size-adaptive only in the CE term)                               --seeds
  size-adaptive nnUNetTrainerSizeAdaptiveCE                                       --seeds
  nnunet        nnUNetTrainer as shipped (it also mirrors the sagittal slice)     first seed
  msff          MSFFUNetTrainer                                                   first seed
  msff-sa       MSFFUNetTrainerSizeAdaptiveCE                                     first seed
  symtc         SymTCTrainer_small (same plan: 128x128 patches are valid for it)  first seed
  ce-ssm        the CE baseline on the SSM-expanded dataset                       --seeds

Structures are grouped into small / medium / large thirds by their mean voxel count in the
held-out references. Outputs in ``--workdir``: ``convergence.csv`` (every checkpoint and structure),
``convergence.png`` (curves: mean over seeds, band = min..max), ``convergence.md`` (the table that is
also printed). Finished runs are read back from ``curves/`` instead of retrained, so arms can be
run in separate processes on one work folder and reported together with ``--report-only``.

    python benchmarks/convergence.py --workdir W                      # default: ~60 min on 2 cores
    python benchmarks/convergence.py --workdir W -device cuda --downsample 1 --iterations 5000 --eval-every 250
    python benchmarks/convergence.py --workdir W --arms ce size-adaptive --seeds 0 --iterations 200  # quick look

A report, not a test: at small budgets the differences can go either way.
"""
import argparse
import csv
import json
import os
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from heldout import held_out_dice, make_trainer, nnUNetTrainerAnatomy, seed_everything
from ssm_augment_effect import prepare, prepared_datasets

from nnunetv2_symtc.demo import use_nnunet_folders

ARMS: Dict[str, Tuple[str, str, str, bool]] = {
    # key: (label, trainer, dataset, all seeds)
    "ce": ("CE (nnU-Net + anatomy-safe aug.)", "nnUNetTrainerAnatomy", "without SSM", True),
    "size-adaptive": ("size-adaptive CE", "nnUNetTrainerSizeAdaptiveCE", "without SSM", True),
    "nnunet": ("nnUNetTrainer", "nnUNetTrainer", "without SSM", False),
    "msff": ("MSFF U-Net", "MSFFUNetTrainer", "without SSM", False),
    "msff-sa": ("MSFF U-Net + size-adaptive CE", "MSFFUNetTrainerSizeAdaptiveCE", "without SSM", False),
    "symtc": ("SymTC_small", "SymTCTrainer_small", "without SSM", False),
    "ce-ssm": ("CE + ssm-augment", "nnUNetTrainerAnatomy", "with SSM", True),
}
TARGET_DICE = 0.8
FIELDS = ("arm", "trainer", "dataset", "seed", "iteration", "train_seconds", "class", "name", "dice")


def trainer_base(name: str) -> type:
    """The trainer class called ``name`` (nnU-Net's, ours, or the benchmarks' CE baseline)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_symtc import trainers

    if name == "nnUNetTrainer":
        return nnUNetTrainer
    if name == "nnUNetTrainerAnatomy":
        return nnUNetTrainerAnatomy
    return getattr(trainers, name)


def curve_trainer(base: type, iterations: int, eval_every: int, seed: int, raw: Path, rows: List[Dict]) -> type:
    """``base`` trained for ``iterations`` steps in epochs of ``eval_every`` steps; after every epoch
    the current weights are scored on ``raw``'s held-out cases and appended to ``rows``.
    The name carries budget and seed, so every run has its own nnU-Net output folder."""

    def on_train_start(self):
        base.on_train_start(self)
        self.curve_train_seconds, self.curve_clock = 0.0, time.perf_counter()

    def on_epoch_end(self):
        base.on_epoch_end(self)  # nnU-Net's bookkeeping; increments current_epoch
        self.curve_train_seconds += time.perf_counter() - self.curve_clock
        step = self.current_epoch * self.num_iterations_per_epoch
        dice = held_out_dice(self, raw)
        rows.append({"iteration": step, "train_seconds": round(self.curve_train_seconds, 1), "dice": dice})
        self.print_to_log_file(f"held-out Dice at {step} steps: mean {np.mean(list(dice.values())):.3f}")
        self.curve_clock = time.perf_counter()

    name = f"{base.__name__}_conv{iterations}x{eval_every}s{seed}"
    return type(name, (base,), {"__init__": _budget_init(base, iterations // eval_every, eval_every),
                                "on_train_start": on_train_start, "on_epoch_end": on_epoch_end,
                                "__module__": __name__, "__qualname__": name})


def _budget_init(base: type, epochs: int, per_epoch: int):
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = epochs, per_epoch, 1
    return __init__


def run_arm(arm: str, seed: int, raw: Path, args, device: torch.device) -> List[Dict]:
    """Train one arm with one seed (or read its finished curve back); returns its CSV rows."""
    label, trainer_name, dataset, _ = ARMS[arm]
    out = Path(args.workdir) / "curves" / f"{arm}_seed{seed}_{args.iterations}x{args.eval_every}.csv"
    if out.is_file():
        with open(out) as f:
            return list(csv.DictReader(f))
    names = {int(v): k for k, v in json.loads((raw / "dataset.json").read_text())["labels"].items()}
    checkpoints: List[Dict] = []
    trainer_class = curve_trainer(trainer_base(trainer_name), args.iterations, args.eval_every, seed, raw,
                                  checkpoints)
    print(f"\n=== {label} ({trainer_name}), {dataset}, seed {seed} ===", flush=True)
    seed_everything(seed)
    trainer = make_trainer(trainer_class, raw, "2d", 0, device)
    trainer.run_training()
    rows = [{"arm": arm, "trainer": trainer_name, "dataset": dataset, "seed": seed, "iteration": c["iteration"],
             "train_seconds": c["train_seconds"], "class": k, "name": names[k], "dice": round(v, 4)}
            for c in checkpoints for k, v in c["dice"].items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def size_groups(raw: Path) -> Dict[str, List[str]]:
    """Structure names in thirds (small, medium, large) by mean voxel count in the held-out references."""
    import SimpleITK as sitk

    from heldout import held_out_cases

    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    totals = {name: 0.0 for name, v in labels.items() if int(v) != 0 and name != "ignore"}
    cases = held_out_cases(raw)
    for _, reference in cases:
        array = sitk.GetArrayFromImage(sitk.ReadImage(reference))
        for name in totals:
            totals[name] += float((array == int(labels[name])).sum()) / len(cases)
    ordered = sorted(totals, key=totals.get)
    third = len(ordered) / 3
    return {"small": ordered[:round(third)], "medium": ordered[round(third):round(2 * third)],
            "large": ordered[round(2 * third):]}


def curves(rows: Sequence[Dict], names: Optional[Sequence[str]] = None) -> Dict[Tuple[str, int], Dict[int, float]]:
    """(arm, seed) -> {iteration: mean Dice over ``names`` (default all structures)}."""
    table: Dict[Tuple[str, int], Dict[int, List[float]]] = {}
    for r in rows:
        if names is None or r["name"] in names:
            table.setdefault((r["arm"], int(r["seed"])), {}).setdefault(int(r["iteration"]), []).append(float(r["dice"]))
    return {key: {it: float(np.mean(v)) for it, v in sorted(points.items())} for key, points in table.items()}


def spread(values: Sequence[float]) -> str:
    """``mean`` for one value, ``mean (min–max)`` for several."""
    return f"{np.mean(values):.3f}" + (f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else "")


def report(rows: List[Dict], groups: Dict[str, List[str]], arms: Sequence[str], out_dir: Path, title: str) -> str:
    """Markdown table (printed and written) and the PNG of the curves; returns the table."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    overall = curves(rows)
    by_group = {g: curves(rows, names) for g, names in groups.items()}
    l1 = curves(rows, ["L1"])
    lines = [title, "",
             "| arm | seeds | Dice small | Dice medium | Dice large | Dice all | L1 | steps to Dice 0.8 | train s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for arm in arms:
        seeds = sorted(s for a, s in overall if a == arm)
        if not seeds:
            continue
        final = {name: [list(table[(arm, s)].values())[-1] for s in seeds]
                 for name, table in (*by_group.items(), ("all", overall), ("L1", l1))}
        reached = [next((it for it, d in overall[(arm, s)].items() if d >= TARGET_DICE), None) for s in seeds]
        reached_text = ", ".join("not reached" if r is None else str(r) for r in reached)
        seconds = [max(float(r["train_seconds"]) for r in rows if r["arm"] == arm and int(r["seed"]) == s) for s in seeds]
        lines.append(f"| {ARMS[arm][0]} | {len(seeds)} | " + " | ".join(spread(final[k]) for k in
                     ("small", "medium", "large", "all", "L1")) + f" | {reached_text} | {np.mean(seconds):.0f} |")
    lines += ["", "Structures by size (held-out mean voxels): " +
              "; ".join(f"{g}: {', '.join(n)}" for g, n in groups.items()),
              "Dice: last checkpoint, mean over seeds (min–max over seeds). Steps to 0.8: first checkpoint "
              "with mean Dice over all structures ≥ 0.8, per seed."]
    table = "\n".join(lines)
    print("\n" + table)
    (out_dir / "convergence.md").write_text(table + "\n")

    panels = [("all structures", overall), ("small structures", by_group["small"]), ("L1", l1)]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), sharey=True)
    for ax, (name, table) in zip(axes, panels):
        for arm in arms:
            seeds = sorted(s for a, s in table if a == arm)
            if not seeds:
                continue
            steps = list(table[(arm, seeds[0])])
            values = np.array([[table[(arm, s)][it] for it in steps] for s in seeds])
            line, = ax.plot(steps, values.mean(0), label=ARMS[arm][0])
            if len(seeds) > 1:
                ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
        ax.axhline(TARGET_DICE, color="grey", lw=0.5, ls="--")
        ax.set(title=f"held-out Dice, {name}", xlabel="gradient steps", ylim=(0, 1))
    axes[0].set_ylabel("Dice")
    axes[-1].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    figure.savefig(out_dir / "convergence.png", dpi=90)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="nnU-Net folders, curves and outputs (reused across runs)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the ce, size-adaptive and ce-ssm arms; the others use the first")
    parser.add_argument("--iterations", type=int, default=500, help="gradient steps per run (default 500)")
    parser.add_argument("--eval-every", type=int, default=50, help="held-out evaluation every N steps (default 50)")
    parser.add_argument("--train-patients", type=int, default=10)
    parser.add_argument("--test-patients", type=int, default=10)
    parser.add_argument("--shapes", type=int, default=2, help="SSM warps per training case and fold (default 2)")
    parser.add_argument("--downsample", type=int, default=4,
                        help="plan 2d at this many times coarser in-plane spacing (default 4: 128x128; 1: nnU-Net's plan)")
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs in --workdir, train nothing")
    args = parser.parse_args()
    if args.iterations % args.eval_every:
        parser.error(f"--iterations ({args.iterations}) must be a multiple of --eval-every ({args.eval_every})")
    torch.set_num_threads(args.threads)

    root = Path(args.workdir)
    use_nnunet_folders(root)
    os.environ.setdefault("nnUNet_def_n_proc", "1")
    os.environ.setdefault("nnUNet_compile", "f")
    os.environ["nnUNet_n_proc_DA"] = "0"  # augmentation in this process: the same data order for every arm
    datasets = prepared_datasets(root)
    if datasets is None:
        if args.report_only:
            parser.error(f"{root}: no prepared datasets to report on")
        start = time.perf_counter()
        datasets = prepare(root, args.train_patients, args.test_patients, 1, args.shapes, args.downsample,
                           args.seeds[0])
        print(f"data preparation: {time.perf_counter() - start:.0f} s")
    device = torch.device(args.device)
    rows: List[Dict] = []
    for arm in args.arms:
        for seed in (args.seeds if ARMS[arm][3] else args.seeds[:1]):
            curve_file = root / "curves" / f"{arm}_seed{seed}_{args.iterations}x{args.eval_every}.csv"
            if args.report_only and not curve_file.is_file():
                continue
            rows += run_arm(arm, seed, datasets[ARMS[arm][2]], args, device)
    if not rows:
        parser.error("no finished runs to report")
    all_rows = root / "convergence.csv"
    with open(all_rows, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plans = json.loads((root / "nnUNet_preprocessed" / datasets["without SSM"].name / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["2d"]
    title = (f"{args.iterations} steps, held-out evaluation every {args.eval_every}, seeds {args.seeds}, "
             f"device {args.device}; 2d plan: patch {config['patch_size']}, batch {config['batch_size']}, "
             f"spacing {config['spacing']} (source pixels); {len(list((datasets['without SSM'] / 'labelsTs').iterdir()))} "
             "held-out slices")
    report(rows, size_groups(datasets["without SSM"]), args.arms, root, title)
    print(f"\nwrote {all_rows}, {root / 'convergence.png'}, {root / 'convergence.md'}")


if __name__ == "__main__":
    main()
