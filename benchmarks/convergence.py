"""Learning curves on the phantom: held-out Dice against gradient steps for every trainer of the package.

Two studies, each on its own phantom data; within a study every arm trains on the same
preprocessed data, nnU-Net fold ``all``, for ``--iterations`` gradient steps, and every
``--eval-every`` steps the current weights predict the held-out subjects through nnU-Net's
predictor (never trained on; scored in the original geometry).

methods  The demo's phase-1 task: SPINEPS semantic labels (14 classes, from endplates and articular
         processes to vertebral bodies) on 2D sagittal slices of ``BUDGETS['cpu'].phantom``
         subjects: ``--train-subjects`` with seeds 0.., ``--held-out-subjects`` with seeds +200000.
         Every U-Net arm uses the demo's U-Net plan (nnU-Net's 2d plan at half its features);
         SymTC is planned at the demo's CPU width with the same patch and batch size.
ssm      SSMSpine format (512x512 mid-sagittal slices, L1-S1 and five discs as level classes), with
         and without ``symtc ssm-augment`` (``--shapes`` warps per training case); nnU-Net's 2d plan
         at ``--downsample`` x coarser in-plane spacing, one plan for both datasets.

Arms (``--arms``; default all):
  ce             methods  nnUNetTrainer + our anatomy-safe augmentation (the CE baseline: it
                          differs from size-adaptive only in the CE term)                --seeds
  size-adaptive  methods  nnUNetTrainerSizeAdaptiveCE                                    --seeds
  nnunet         methods  nnUNetTrainer as shipped (it also mirrors the sagittal slice)  first seed
  msff           methods  MSFFUNetTrainer                                                first seed
  msff-sa        methods  MSFFUNetTrainerSizeAdaptiveCE                                  first seed
  symtc          methods  SymTCTrainer_lr1en3 on SymTC plans (E64, 4 heads, 16/32/64)   first seed
  ssm-off        ssm      the CE baseline on SSMSpine                                    first seed
  ssm-on         ssm      the CE baseline on SSMSpine + ssm-augment                      first seed

Scores: Dice per class (argmax) and of class unions: whole vertebrae (subregions 41-50 + sacrum) and
discs; in SSMSpine the six vertebra or five disc level classes together. A union is predicted where
its summed probability exceeds 0.5, so it ignores confusions inside it (in SSMSpine: level identity).
Methods classes are grouped into small / medium / large thirds by held-out mean voxel count.
Outputs in ``--workdir``: ``convergence.csv`` (every checkpoint and class), ``convergence.png``
(curves: mean over seeds, band = min..max), ``convergence.md`` (the tables also printed).
Finished runs are read back from ``curves/`` instead of retrained; ``--report-only`` trains nothing.

    python benchmarks/convergence.py --workdir W                      # default: 65 min measured on 2 cores
    python benchmarks/convergence.py --workdir W -device cuda --iterations 5000 --eval-every 250
    python benchmarks/convergence.py --workdir W --arms ce size-adaptive --seeds 0 --iterations 100  # quick look

A report, not a test: at small budgets the differences can go either way.
"""
import argparse
import csv
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from heldout import held_out_cases, held_out_dice, make_trainer, seed_everything
from ssm_augment_effect import prepare as prepare_ssmspine
from ssm_augment_effect import prepared_datasets as prepared_ssmspine

from nnunetv2_symtc.demo import BUDGETS, CPU_SYMTC_WIDTH, phantom_subjects
from nnunetv2_symtc.nnunet_runs import plan_and_preprocess, use_nnunet_folders
from nnunetv2_symtc.trainers import budget_variant

METHODS_ID = 954
HELD_OUT_SEED_OFFSET = 200_000
UNET_PLANS, SYMTC_PLANS, SSM_PLANS = "nnUNetPlans_bench", "nnUNetPlans_SymTC_bench", "nnUNetPlans"
TARGET_DICE = 0.8
FIELDS = ("arm", "trainer", "dataset", "seed", "iteration", "train_seconds", "class", "name", "dice")


@dataclass(frozen=True)
class Arm:
    label: str
    trainer: str
    study: str     # "methods" or "ssm"
    dataset: str   # key of the prepared raw datasets
    plans: str
    all_seeds: bool


ARMS: Dict[str, Arm] = {
    "ce": Arm("CE (nnU-Net + anatomy-safe aug.)", "nnUNetTrainerAnatomy", "methods", "semantic", UNET_PLANS, True),
    "size-adaptive": Arm("size-adaptive CE", "nnUNetTrainerSizeAdaptiveCE", "methods", "semantic", UNET_PLANS, True),
    "nnunet": Arm("nnUNetTrainer", "nnUNetTrainer", "methods", "semantic", UNET_PLANS, False),
    "msff": Arm("MSFF U-Net", "MSFFUNetTrainer", "methods", "semantic", UNET_PLANS, False),
    "msff-sa": Arm("MSFF U-Net + size-adaptive CE", "MSFFUNetTrainerSizeAdaptiveCE", "methods", "semantic",
                   UNET_PLANS, False),
    "symtc": Arm("SymTC (demo's CPU width)", "SymTCTrainer_lr1en3", "methods", "semantic", SYMTC_PLANS, False),
    "ssm-off": Arm("CE, SSMSpine", "nnUNetTrainerAnatomy", "ssm", "without SSM", SSM_PLANS, False),
    "ssm-on": Arm("CE, SSMSpine + ssm-augment", "nnUNetTrainerAnatomy", "ssm", "with SSM", SSM_PLANS, False),
}


def trainer_base(name: str) -> type:
    """The trainer class called ``name`` (nnU-Net's default or one of ours)."""
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_symtc import trainers

    if name == "nnUNetTrainer":
        return nnUNetTrainer
    return getattr(trainers, name)


def curve_trainer(base: type, iterations: int, eval_every: int, seed: int, raw: Path,
                  unions: Dict[str, List[int]], rows: List[Dict]) -> type:
    """``base`` trained for ``iterations`` steps in epochs of ``eval_every`` steps; after every epoch
    the current weights are scored on ``raw``'s held-out cases and appended to ``rows``.
    The name carries budget and seed, so every run has its own nnU-Net output folder."""

    def on_train_start(self):
        budgeted.on_train_start(self)
        self.curve_train_seconds, self.curve_clock = 0.0, time.perf_counter()

    def on_epoch_end(self):
        budgeted.on_epoch_end(self)  # nnU-Net's bookkeeping; increments current_epoch
        self.curve_train_seconds += time.perf_counter() - self.curve_clock
        step = self.current_epoch * self.num_iterations_per_epoch
        dice = held_out_dice(self, raw, unions)
        rows.append({"iteration": step, "train_seconds": round(self.curve_train_seconds, 1), "dice": dice})
        self.print_to_log_file(f"held-out Dice at {step} steps: " +
                               ", ".join(f"{k} {dice[k]:.3f}" for k in unions if k in dice))
        self.curve_clock = time.perf_counter()

    budgeted = budget_variant(base, f"conv{iterations}x{eval_every}s{seed}", num_epochs=iterations // eval_every,
                              iterations_per_epoch=eval_every, val_iterations_per_epoch=1)
    name = budgeted.__name__
    return type(name, (budgeted,), {"on_train_start": on_train_start, "on_epoch_end": on_epoch_end,
                                    "__module__": __name__, "__qualname__": name})


def prepare_methods(root: Path, train_subjects: int, held_out_subjects: int) -> Path:
    """Phantom subjects (SPINEPS format) -> raw dataset with the held-out subjects in ``imagesTs``
    -> nnU-Net's 2d plan and preprocessing -> the demo's U-Net plan and the SymTC plan at the same
    patch and batch size. Reused when already there; returns the raw folder."""
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.phantom import write_spineps
    from nnunetv2_symtc.planning.symtc import plan_symtc
    from nnunetv2_symtc.planning.unet import resize_unet_plans

    try:
        name = maybe_convert_to_dataset_name(METHODS_ID)
        if (root / "nnUNet_preprocessed" / name / f"{SYMTC_PLANS}.json").is_file():
            print(f"reusing the prepared methods dataset {name}")
            return root / "nnUNet_raw" / name
    except RuntimeError:  # not there yet
        pass
    budget = BUDGETS["cpu"]
    train = phantom_subjects(budget, 0, 0, train_subjects)
    held_out = phantom_subjects(budget, 0, HELD_OUT_SEED_OFFSET, held_out_subjects)
    write_spineps(root / "phantom_spineps", train + held_out)
    raw = convert_spineps(root / "phantom_spineps", METHODS_ID, "ConvergenceSemantic",
                          test_subjects=[s for s, _ in held_out])
    preprocessed = plan_and_preprocess(METHODS_ID, "2d")
    unet = resize_unet_plans(preprocessed, "nnUNetPlans", UNET_PLANS, "2d", budget.unet_features)
    unet_2d = json.loads(unet.read_text())["configurations"]["2d"]
    plan_symtc(preprocessed, "nnUNetPlans", SYMTC_PLANS, width=CPU_SYMTC_WIDTH, configurations=["2d"],
               patch_size=unet_2d["patch_size"], batch_size=unet_2d["batch_size"])
    return Path(raw)


def class_unions(raw: Path, study: str) -> Dict[str, List[int]]:
    """Named unions of nnU-Net classes: whole vertebrae and discs (and the canal in ``methods``)."""
    labels = json.loads((raw / "dataset.json").read_text())["labels"]
    if study == "ssm":
        return {"vertebrae": [v for k, v in labels.items() if v and "/" not in k],
                "discs": [v for k, v in labels.items() if "/" in k]}
    from nnunetv2_symtc.evaluation.headline import SEMANTIC_GROUPS

    classes = json.loads((raw / "label_map.json").read_text())["classes"]
    return {group: [c["class"] for c in classes if set(c["source_values"]) & set(values)]
            for group, values in SEMANTIC_GROUPS.items()}


def run_arm(key: str, seed: int, raw: Path, args, device: torch.device) -> List[Dict]:
    """Train one arm with one seed (or read its finished curve back); returns its CSV rows."""
    arm = ARMS[key]
    out = Path(args.workdir) / "curves" / f"{key}_seed{seed}_{args.iterations}x{args.eval_every}.csv"
    if out.is_file():
        with open(out) as f:
            return list(csv.DictReader(f))
    names = {int(v): k for k, v in json.loads((raw / "dataset.json").read_text())["labels"].items()}
    unions = class_unions(raw, arm.study)
    checkpoints: List[Dict] = []
    trainer_class = curve_trainer(trainer_base(arm.trainer), args.iterations, args.eval_every, seed, raw, unions,
                                  checkpoints)
    print(f"\n=== {arm.label} ({arm.trainer}, {arm.plans}), {arm.dataset}, seed {seed} ===", flush=True)
    seed_everything(seed)
    trainer = make_trainer(trainer_class, raw, "2d", "all", device, arm.plans)
    trainer.run_training()
    rows = [{"arm": key, "trainer": arm.trainer, "dataset": arm.dataset, "seed": seed, "iteration": c["iteration"],
             "train_seconds": c["train_seconds"], "class": k, "name": names.get(k, k), "dice": round(v, 4)}
            for c in checkpoints for k, v in c["dice"].items()]
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return rows


def size_groups(raw: Path) -> Dict[str, List[str]]:
    """Class names in thirds (small, medium, large) by mean voxel count in the held-out references."""
    import SimpleITK as sitk

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
    """(arm, seed) -> {iteration: mean Dice over ``names`` (default every class, no union)}."""
    table: Dict[Tuple[str, int], Dict[int, List[float]]] = {}
    for r in rows:
        if (r["name"] in names) if names is not None else str(r["class"]).isdigit():
            table.setdefault((r["arm"], int(r["seed"])), {}).setdefault(int(r["iteration"]), []).append(float(r["dice"]))
    return {key: {it: float(np.mean(v)) for it, v in sorted(points.items())} for key, points in table.items()}


def spread(values: Sequence[float]) -> str:
    """``mean`` for one value, ``mean (min–max)`` for several."""
    return f"{np.mean(values):.3f}" + (f" ({min(values):.3f}–{max(values):.3f})" if len(values) > 1 else "")


def study_table(rows: List[Dict], arms: Sequence[str], columns: Dict[str, Optional[List[str]]],
                target: str) -> List[str]:
    """Markdown rows: final Dice per column (mean over seeds, min–max), steps until the ``target``
    column first reaches ``TARGET_DICE``, training seconds."""
    tables = {title: curves(rows, names) for title, names in columns.items()}
    lines = ["| arm | seeds | " + " | ".join(f"Dice {t}" for t in columns) + f" | steps to {target} ≥ {TARGET_DICE} "
             "| train s |", "|---|---|" + "---|" * len(columns) + "---|---|"]
    for key in arms:
        seeds = sorted(s for a, s in tables[target] if a == key)
        if not seeds:
            continue
        final = {t: [list(table[(key, s)].values())[-1] for s in seeds] for t, table in tables.items()}
        reached = [next((it for it, d in tables[target][(key, s)].items() if d >= TARGET_DICE), None) for s in seeds]
        seconds = [max(float(r["train_seconds"]) for r in rows if r["arm"] == key and int(r["seed"]) == s)
                   for s in seeds]
        lines.append(f"| {ARMS[key].label} | {len(seeds)} | " + " | ".join(spread(final[t]) for t in columns) +
                     " | " + ", ".join("not reached" if r is None else str(r) for r in reached) +
                     f" | {np.mean(seconds):.0f} |")
    return lines


def plot(panels: List[Tuple[str, Dict[Tuple[str, int], Dict[int, float]], Sequence[str]]], path: Path) -> None:
    """One panel per (title, curves, arms), three per row: mean over seeds, band = min..max over seeds."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(panels) // 3)
    with plt.style.context("default"), plt.rc_context({"font.size": 8}):
        figure, axes = plt.subplots(rows, 3, figsize=(13, 3.6 * rows), squeeze=False)
        for ax in axes.flat[len(panels):]:
            ax.set_visible(False)
        for ax, (title, table, arms) in zip(axes.flat, panels):
            for key in arms:
                seeds = sorted(s for a, s in table if a == key)
                if not seeds:
                    continue
                steps = list(table[(key, seeds[0])])
                values = np.array([[table[(key, s)][it] for it in steps] for s in seeds])
                line, = ax.plot(steps, values.mean(0), label=ARMS[key].label)
                if len(seeds) > 1:
                    ax.fill_between(steps, values.min(0), values.max(0), color=line.get_color(), alpha=0.2)
            ax.axhline(TARGET_DICE, color="grey", lw=0.5, ls="--")
            ax.set(title=title, xlabel="gradient steps", ylabel="held-out Dice", ylim=(0, 1))
            ax.legend(fontsize=7, loc="lower right")
        figure.tight_layout()
        figure.savefig(path, dpi=90)
        plt.close(figure)


def report(rows: List[Dict], datasets: Dict[str, Path], arms: Sequence[str], out_dir: Path, title: str) -> str:
    """Print and write the tables (one per study) and the PNG of the curves; returns the tables."""
    lines, panels = [title], []
    methods = [a for a in arms if ARMS[a].study == "methods"]
    ssm = [a for a in arms if ARMS[a].study == "ssm"]
    if methods:
        groups = size_groups(datasets["semantic"])
        columns = {**groups, "all classes": None, "vertebrae": ["vertebrae"], "discs": ["discs"]}
        lines += ["", "**Methods** (SPINEPS semantic classes, 2D sagittal slices of the demo's phantom)", "",
                  *study_table(rows, methods, columns, "vertebrae"), "",
                  "Classes by size (held-out mean voxels): " + "; ".join(f"{g}: {', '.join(n)}"
                                                                          for g, n in groups.items())]
        panels += [("methods: all classes", curves(rows), methods),
                   ("methods: small classes", curves(rows, groups["small"]), methods),
                   ("methods: whole vertebrae", curves(rows, ["vertebrae"]), methods)]
    if ssm:
        columns = {"vertebrae (any level)": ["vertebrae"], "discs (any level)": ["discs"], "levels (mean)": None,
                   "L1": ["L1"]}
        lines += ["", "**SSM augmentation** (SSMSpine format: every vertebra and disc its own level class)", "",
                  *study_table(rows, ssm, columns, "vertebrae (any level)")]
        panels += [("SSMSpine: vertebrae, any level", curves(rows, ["vertebrae"]), ssm),
                   ("SSMSpine: level classes (mean)", curves(rows), ssm),
                   ("SSMSpine: L1", curves(rows, ["L1"]), ssm)]
    lines += ["", "Dice: last checkpoint, mean over held-out cases, then over seeds (min–max over seeds). "
              "Union columns (vertebrae, discs) predict a union where its summed probability exceeds 0.5 "
              f"(level-blind in SSMSpine); steps: the first checkpoint at or above {TARGET_DICE}, per seed."]
    text = "\n".join(lines)
    print("\n" + text)
    (out_dir / "convergence.md").write_text(text + "\n")
    plot(panels, out_dir / "convergence.png")
    return text


def plan_summary(raw: Path, plans: str) -> str:
    """``patch P, batch B, <network>`` of a plan's 2d configuration."""
    config = json.loads((Path(os.environ["nnUNet_preprocessed"]) / raw.name / f"{plans}.json").read_text())
    config = config["configurations"]["2d"]
    kwargs = config["architecture"]["arch_kwargs"]
    width = kwargs.get("features_per_stage") or kwargs.get("channels")
    return (f"{plans}: patch {config['patch_size']}, batch {config['batch_size']}, "
            f"{config['architecture']['network_class_name'].rsplit('.', 1)[-1]} {width}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", required=True, help="nnU-Net folders, curves and outputs (reused across runs)")
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=list(ARMS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                        help="seeds of the ce and size-adaptive arms; the others use the first")
    parser.add_argument("--iterations", type=int, default=800, help="gradient steps per run (default 800)")
    parser.add_argument("--eval-every", type=int, default=50, help="held-out evaluation every N steps (default 50)")
    parser.add_argument("--train-subjects", type=int, default=16, help="methods study: training subjects")
    parser.add_argument("--held-out-subjects", type=int, default=4, help="methods study: held-out subjects")
    parser.add_argument("--ssm-train-patients", type=int, default=10, help="ssm study: training patients")
    parser.add_argument("--ssm-test-patients", type=int, default=10, help="ssm study: held-out patients")
    parser.add_argument("--shapes", type=int, default=2, help="SSM warps per training case and fold (default 2)")
    parser.add_argument("--downsample", type=int, default=4,
                        help="ssm study: plan 2d at this many times coarser in-plane spacing (default 4: 128x128)")
    parser.add_argument("-device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--report-only", action="store_true", help="report the finished runs in --workdir, train nothing")
    args = parser.parse_args()
    if args.iterations % args.eval_every:
        parser.error(f"--iterations ({args.iterations}) must be a multiple of --eval-every ({args.eval_every})")

    root = Path(args.workdir).resolve()
    use_nnunet_folders(root)
    os.environ.setdefault("nnUNet_def_n_proc", "2")
    os.environ.setdefault("nnUNet_compile", "f")
    studies = {ARMS[a].study for a in args.arms}
    start = time.perf_counter()
    datasets: Dict[str, Path] = {}
    if "methods" in studies:
        datasets["semantic"] = prepare_methods(root, args.train_subjects, args.held_out_subjects)
    if "ssm" in studies:
        datasets.update(prepared_ssmspine(root) or prepare_ssmspine(
            root, args.ssm_train_patients, args.ssm_test_patients, 1, args.shapes, args.downsample, args.seeds[0]))
    print(f"data preparation: {time.perf_counter() - start:.0f} s")
    # Augmentation in this process (the same data order for every arm). Set after planning: nnU-Net's
    # planner sets torch's thread count from this variable and refuses 0.
    os.environ["nnUNet_n_proc_DA"] = "0"
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    rows: List[Dict] = []
    for key in args.arms:
        for seed in (args.seeds if ARMS[key].all_seeds else args.seeds[:1]):
            curve_file = root / "curves" / f"{key}_seed{seed}_{args.iterations}x{args.eval_every}.csv"
            if args.report_only and not curve_file.is_file():
                continue
            rows += run_arm(key, seed, datasets[ARMS[key].dataset], args, device)
    if not rows:
        parser.error("no finished runs to report")
    with open(root / "convergence.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    plans = sorted({(ARMS[a].dataset, ARMS[a].plans) for a in args.arms})
    title = (f"{args.iterations} steps per run, held-out evaluation every {args.eval_every}, seeds {args.seeds}, "
             f"device {args.device}. Plans (2d): " +
             "; ".join(plan_summary(datasets[d], p) for d, p in plans if d != "with SSM") + ". Held-out: " +
             ", ".join(f"{d} {len(held_out_cases(datasets[d]))}" for d in sorted({d for d, _ in plans})))
    report(rows, datasets, args.arms, root, title)
    print(f"\nwrote {root / 'convergence.csv'}, {root / 'convergence.png'}, {root / 'convergence.md'}")


if __name__ == "__main__":
    main()
