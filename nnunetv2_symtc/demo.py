"""``symtc demo``: the whole pipeline on the built-in phantom, on one command.

1. generate phantom subjects: training subjects and held-out test subjects (other seeds);
2. convert them (SPINEPS format) to a semantic (phase-1) dataset and a phase-2 cutout dataset;
3. plan and preprocess with nnU-Net, then write the budget's plans: a U-Net plan and a SymTC plan
   (``plan_symtc``) for the 2D sagittal phase 1 (both on the same preprocessed data);
4. train through nnU-Net: phase 1 as a U-Net with the size-adaptive CE
   (``nnUNetTrainerSizeAdaptiveCE``) and as SymTC (``SymTCTrainer`` on the SymTC plans); phase 2
   (``SpinepsInstanceTrainer``, 3D cutouts);
5. predict two-phase on the held-out scans three times: phase 1 by the U-Net, by SymTC, and by the
   ensemble of both (probabilities averaged), phase 2 each time;
6. evaluate (union Dice of whole vertebrae, discs and canal; vertebra PQ; level accuracy);
7. print the table and write ``summary.json`` and ``report.html``.

Everything (nnU-Net folders included) goes below the output folder, so the demo never touches a
user's own nnU-Net datasets. Each model is trained by its role's budget variant
(``nnunetv2_symtc.trainers.demo``, e.g. ``SymTCTrainer_lr1en3_demo_cpu``): result folders carry the
trainer that set their budget and the plans names, so the models load like any other
(``symtc predict --semantic-model <folder>``).

Honesty rules of the budgets: test subjects come from seeds no training or tuning run used
(``TEST_SEED_OFFSET``); the CPU budget's choices (plans, widths, iterations) were made on
validation subjects (``VALIDATION_SEED_OFFSET``), never on the test subjects.
"""
from __future__ import annotations

import json
import shutil
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

from nnunetv2_symtc.nnunet_runs import default_process_counts, plan_and_preprocess, train_fold_all, use_nnunet_folders
from nnunetv2_symtc.phantom import PhantomConfig
from nnunetv2_symtc.trainers.demo import DEMO_TRAINING, demo_trainer_name

SEMANTIC_ID, INSTANCE_ID = 971, 973
UNET_PLANS, SYMTC_PLANS, INSTANCE_PLANS = "nnUNetPlans_demo", "nnUNetPlans_SymTC_demo", "nnUNetPlans_demo"
TEST_SEED_OFFSET = 100_000
"""Test subject ``i`` is drawn with seed ``seed + TEST_SEED_OFFSET + i``: never trained or tuned on."""
VALIDATION_SEED_OFFSET = 50_000
"""Seeds of the validation subjects the budgets are tuned on (``symtc demo --held-out validation``)."""
HELD_OUT_SEED_OFFSETS = {"test": TEST_SEED_OFFSET, "validation": VALIDATION_SEED_OFFSET}
ROLES = ("unet", "symtc", "phase2")
"""The demo's models: phase-1 U-Net, phase-1 SymTC, phase-2 instance model."""
PHASE1_VARIANTS = {"U-Net (size-adaptive CE)": ("unet",), "SymTC": ("symtc",), "ensemble U-Net + SymTC": ("unet", "symtc")}
"""Two-phase prediction runs: name -> the phase-1 models averaged."""


@dataclass(frozen=True)
class DemoBudget:
    """Data size, plans and training budget of one demo run.

    ``training`` maps each role of ``ROLES`` to (epochs, training iterations per epoch), the budget
    of its trainer ``trainers.demo.demo_trainer_name(role, name)``; validation runs
    ``max(1, iterations // 10)`` iterations per epoch. ``unet_features replaces the phase-1
    U-Net plan's features per stage (None: nnU-Net's), ``symtc_width`` is a ``plan_symtc`` width
    (preset name or keyword dict), ``symtc_batch_size`` its batch (None: fitted to
    ``gpu_memory_gib``). Phase 2 runs in ``phase2_configuration`` (``2d``: sagittal slices of the
    cutouts, which the thick phantom slices make nearly as informative as 3D at a fraction of the
    cost) with batch ``phase2_batch_size`` (None: nnU-Net's).
    ``seconds_per_iteration`` (per role, on the device the budget is meant for) gives the start-up
    estimate of the run time; ``fixed_seconds`` covers everything but training.
    """

    name: str
    train_subjects: int
    test_subjects: int
    phantom: PhantomConfig
    cutout_size_mm_zyx: Tuple[float, float, float]
    cutout_spacing_zyx: Tuple[float, float, float]
    training: Dict[str, Tuple[int, int]]
    unet_features: Optional[Tuple[int, ...]]
    symtc_width: Union[str, dict]
    symtc_batch_size: Optional[int]
    phase2_configuration: str
    phase2_batch_size: Optional[int]
    seconds_per_iteration: Dict[str, float]
    fixed_seconds: float
    gpu_memory_gib: float = 10.0

    def expected_seconds(self) -> float:
        """Start-up estimate of the whole run (training iterations × measured cost + the rest)."""
        training = sum(epochs * (iterations + max(1, iterations // 10)) * self.seconds_per_iteration[role]
                       for role, (epochs, iterations) in self.training.items())
        return self.fixed_seconds + training


CPU_SYMTC_WIDTH = dict(embed_dim=64, num_heads=4, channels=(16, 32, 64), num_layers=(1, 1, 1, 1), recompute=False)
"""SymTC at a width a 2-core CPU trains in minutes (same blocks as the paper's; ~2M parameters;
activations stored, not recomputed: memory is no concern at this size and it saves ~20 % time)."""

BUDGETS: Dict[str, DemoBudget] = {
    # A wiring check in a few minutes; the models are not expected to learn anything.
    "tiny": DemoBudget("tiny", 5, 1, PhantomConfig.tiny(), (60.0, 120.0, 120.0), (4.0, 3.0, 3.0),
                       DEMO_TRAINING["tiny"], unet_features=None, symtc_width="tiny",
                       symtc_batch_size=2, phase2_configuration="2d", phase2_batch_size=8,
                       seconds_per_iteration=dict.fromkeys(ROLES, 1.0), fixed_seconds=120),
    # The default on a CPU, <= 15 min on 2 cores (choices made on validation subjects).
    "cpu": DemoBudget("cpu", 16, 4, PhantomConfig.tiny(spacing_zyx=(4.0, 2.0, 2.0)), (60.0, 120.0, 120.0),
                      (4.0, 2.0, 2.0), DEMO_TRAINING["cpu"],
                      unet_features=(16, 32, 64, 128, 256), symtc_width=CPU_SYMTC_WIDTH, symtc_batch_size=8,
                      phase2_configuration="2d", phase2_batch_size=16,
                      seconds_per_iteration={"unet": 0.33, "symtc": 0.56, "phase2": 0.32}, fixed_seconds=100),
    # Realistic resolution and budgets for a GPU, with the paper's SymTC_s width (estimated times).
    "full": DemoBudget("full", 40, 8, PhantomConfig(), (105.6, 228.0, 186.0), (3.3, 1.0, 1.0),
                       DEMO_TRAINING["full"], unet_features=None, symtc_width="small",
                       symtc_batch_size=None, phase2_configuration="3d_fullres", phase2_batch_size=None,
                       seconds_per_iteration={"unet": 0.15, "symtc": 0.5, "phase2": 0.3},
                       fixed_seconds=900, gpu_memory_gib=40.0),
}


def _reset_peak_memory() -> None:
    """Reset this process's peak resident memory (Linux ``/proc/self/clear_refs``); where the
    system cannot, peaks count from the process start."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def _peak_memory_gib() -> Tuple[float, float]:
    """(this process's peak resident memory, the largest finished child process's) in GiB."""
    import resource

    unit = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
    try:
        with open("/proc/self/status") as f:
            own = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
    except (OSError, StopIteration):
        pass
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * unit
    return own / 2 ** 30, children / 2 ** 30


class StageLog:
    """Numbered stage headings with wall times and peak memory; ``timings`` collects seconds per
    stage, ``peak_memory_gib`` this process's peak resident memory during the stage (from the
    process start where it cannot be reset) and the largest child process (nnU-Net's workers)
    finished by the end of the stage."""

    def __init__(self, total: int):
        self.total, self.number, self.timings, self.peak_memory_gib = total, 0, {}, {}

    @contextmanager
    def stage(self, title: str):
        self.number += 1
        print(f"\n=== [{self.number}/{self.total}] {title} ===", flush=True)
        _reset_peak_memory()
        start = time.perf_counter()
        yield
        self.timings[title] = round(time.perf_counter() - start, 1)
        own, child = _peak_memory_gib()
        self.peak_memory_gib[title] = {"process": round(own, 2), "largest_child": round(child, 2)}
        print(f"--- {title}: {self.timings[title]:.1f} s, peak memory {own:.1f} GiB "
              f"(largest child process so far {child:.1f} GiB)", flush=True)


def phantom_subjects(budget: DemoBudget, seed: int, offset: int, count: int) -> List[Tuple[str, object]]:
    """``count`` subjects ``(subject id, PhantomSubject)`` drawn with seeds ``seed + offset + i``."""
    from nnunetv2_symtc.phantom import generate_subject

    return [(f"{offset + i:06d}", generate_subject(seed + offset + i, budget.phantom)) for i in range(count)]


def _write_phantoms(root: Path, budget: DemoBudget, seed: int, held_out: str) -> Dict[str, List[str]]:
    """Training (``spineps_train``) and held-out subjects (``spineps_test``: the ``held_out`` set of
    ``HELD_OUT_SEED_OFFSETS``) in SPINEPS format."""
    from nnunetv2_symtc.phantom import write_spineps

    train = phantom_subjects(budget, seed, 0, budget.train_subjects)
    test = phantom_subjects(budget, seed, HELD_OUT_SEED_OFFSETS[held_out], budget.test_subjects)
    write_spineps(root / "spineps_train", train)
    write_spineps(root / "spineps_test", test)
    return {"train": [s for s, _ in train], "test": [s for s, _ in test]}


def _split_test_scans(spineps_test: Path, images: Path, reference: Path) -> None:
    """Test images go to ``images/``; their masks to ``reference/`` under the names the two-phase
    prediction will write, so the evaluation pairs them by name."""
    from nnunetv2_symtc.inference.inputs import SUFFIXES

    images.mkdir(parents=True, exist_ok=True)
    for sub in ("semantic", "instance"):
        (reference / sub).mkdir(parents=True, exist_ok=True)
    for image in sorted(spineps_test.rglob("*_T2w.nii.gz")):
        case = image.name[:-len(".nii.gz")]
        shutil.copy(image, images / image.name)
        subject = image.name[:-len("_T2w.nii.gz")]
        shutil.copy(image.with_name(f"{subject}_seg-spine_msk.nii.gz"), reference / "semantic" / f"{case}{SUFFIXES['semantic']}")
        shutil.copy(image.with_name(f"{subject}_seg-vert_msk.nii.gz"), reference / "instance" / f"{case}{SUFFIXES['instance']}")


def _write_phase1_plans(preprocessed: Path, budget: DemoBudget) -> Dict[str, dict]:
    """The budget's U-Net plans (nnU-Net's 2d plan, optionally fewer features) and SymTC plans
    (``plan_symtc``), both on nnU-Net's preprocessed 2d data; returns their 2d configurations."""
    from nnunetv2_symtc.planning.symtc import plan_symtc
    from nnunetv2_symtc.planning.unet import resize_unet_plans

    unet = resize_unet_plans(preprocessed, "nnUNetPlans", UNET_PLANS, "2d", budget.unet_features)
    symtc = plan_symtc(preprocessed, "nnUNetPlans", SYMTC_PLANS, budget.gpu_memory_gib, budget.symtc_width,
                       configurations=["2d"], batch_size=budget.symtc_batch_size)
    return {role: json.loads(path.read_text())["configurations"]["2d"] for role, path in (("unet", unet), ("symtc", symtc))}


def _subregion_means(summary: dict) -> Dict[str, float]:
    """Mean per-label Dice over the vertebra subregions (41–50 and the sacrum) of a semantic evaluation."""
    from nnunetv2_symtc.evaluation.headline import WHOLE_VERTEBRA_VALUES

    values = [m["Dice"] for key, m in summary["mean"].items()
              if int(key) in WHOLE_VERTEBRA_VALUES and m["Dice"] == m["Dice"]]
    return {"Dice subregions": sum(values) / len(values) if values else float("nan")}


def _per_level_dice(summary: dict) -> Dict[str, float]:
    """Per-level Dice (vertebrae, discs, endplates by name) of an instance evaluation, for the
    structures present in the reference."""
    from nnunetv2_symtc.labels import instance_value_name

    return {instance_value_name(int(key)): m["Dice"] for key, m in sorted(summary["mean"].items(), key=lambda kv: int(kv[0]))
            if m["n_ref"] > 0}


def _collect(folder: Path, suffix: str, target: Path) -> Path:
    """Link the files of ``folder`` ending in ``suffix`` into ``target`` (evaluation pairs whole folders)."""
    target.mkdir(parents=True, exist_ok=True)
    for path in sorted(folder.glob(f"*{suffix}")):
        (target / path.name).symlink_to(path)
    return target


def _variant_folder(name: str) -> str:
    """Folder name of a two-phase run, e.g. ``'ensemble U-Net + SymTC' -> 'ensemble_u_net_symtc'``."""
    return "_".join("".join(c if c.isalnum() else " " for c in name).lower().split())


def run_demo(output: Path, budget_name: str = "auto", device: str = "auto", seed: int = 0,
             held_out: str = "test") -> dict:
    """Run the whole demo into ``output``; returns the summary also written to ``output/summary.json``.

    ``held_out`` chooses the subjects it predicts and scores: ``test`` (the default) or
    ``validation``, the set on which budgets are tuned (choices are never made on ``test``).
    """
    from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset
    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.devices import resolve_device
    from nnunetv2_symtc.evaluation.headline import score_folders
    from nnunetv2_symtc.evaluation.html_report import write_demo_report
    from nnunetv2_symtc.evaluation.report import EvaluationOptions, LabelSetup, evaluate_folders
    from nnunetv2_symtc.inference.inputs import SUFFIXES
    from nnunetv2_symtc.inference.two_phase import PredictionSettings, TwoPhasePredictor, predict_folder
    from nnunetv2_symtc.instance.cutouts import CutoutSpec
    from nnunetv2_symtc.planning.unet import resize_unet_plans

    device = resolve_device(device)
    if budget_name == "auto":
        budget_name = "full" if device == "cuda" else "cpu"
    if held_out not in HELD_OUT_SEED_OFFSETS:
        raise ValueError(f"unknown held-out set {held_out!r}; choose from {sorted(HELD_OUT_SEED_OFFSETS)}")
    if budget_name not in BUDGETS:
        raise ValueError(f"unknown budget {budget_name!r}; choose from {sorted(BUDGETS)} or 'auto'")
    budget = BUDGETS[budget_name]
    output = Path(output).resolve()
    if output.exists() and any(output.iterdir()):
        raise OSError(f"{output}: output folder exists and is not empty; choose another -o or remove it")
    use_nnunet_folders(output / "nnunet")
    default_process_counts()
    print(f"symtc demo: budget {budget.name!r} on {device}; expected duration about "
          f"{budget.expected_seconds() / 60:.0f} min (measured on 2 CPU cores for 'cpu'; an estimate for "
          f"'full' on one GPU); everything goes to {output}", flush=True)
    log = StageLog(total=7)
    models: Dict[str, Path] = {}

    with log.stage("Generate phantom subjects"):
        subjects = _write_phantoms(output / "sources", budget, seed, held_out)
        _split_test_scans(output / "sources" / "spineps_test", output / "test_images", output / "reference")
        print(f"{len(subjects['train'])} training subjects, {len(subjects['test'])} held-out {held_out} subjects")

    with log.stage("Convert to nnU-Net datasets"):
        semantic_ds = convert_spineps(output / "sources" / "spineps_train", SEMANTIC_ID, "DemoSemantic")
        cutout = CutoutSpec(budget.cutout_size_mm_zyx, budget.cutout_spacing_zyx)
        build_instance_dataset(output / "sources" / "spineps_train", INSTANCE_ID, "DemoInstances",
                               scheme="spineps", cutout=cutout)
        print(f"phase 1: {semantic_ds.name}; phase 2: cutouts of {cutout.shape} voxels")

    with log.stage("Plan and preprocess (nnU-Net), write the U-Net and SymTC plans"):
        phase1_plans = _write_phase1_plans(plan_and_preprocess(SEMANTIC_ID, "2d"), budget)
        resize_unet_plans(plan_and_preprocess(INSTANCE_ID, budget.phase2_configuration), "nnUNetPlans", INSTANCE_PLANS,
                          budget.phase2_configuration, batch_size=budget.phase2_batch_size)
        for role, configuration in phase1_plans.items():
            kwargs = configuration["architecture"]["arch_kwargs"]
            print(f"{role}: {configuration['architecture']['network_class_name'].rsplit('.', 1)[-1]}, patch "
                  f"{configuration['patch_size']}, batch {configuration['batch_size']}, "
                  f"features {kwargs.get('features_per_stage') or kwargs.get('channels')}")

    with log.stage("Train"):
        jobs = {"unet": ("phase 1 U-Net 2d", SEMANTIC_ID, "2d", UNET_PLANS),
                "symtc": ("phase 1 SymTC 2d", SEMANTIC_ID, "2d", SYMTC_PLANS),
                "phase2": (f"phase 2 instance {budget.phase2_configuration}", INSTANCE_ID,
                           budget.phase2_configuration, INSTANCE_PLANS)}
        for role, (title, dataset_id, configuration, plans) in jobs.items():
            epochs, iterations = budget.training[role]
            trainer = demo_trainer_name(role, budget.name)
            start = time.perf_counter()
            print(f"\n-- training {title}: {trainer} with {plans} ({epochs} epochs x {iterations} iterations)", flush=True)
            models[role] = train_fold_all(dataset_id, configuration, trainer, plans, device)
            print(f"-- {title}: {time.perf_counter() - start:.0f} s -> {models[role]}", flush=True)

    settings = PredictionSettings(folds=("all",), device=device)
    with log.stage("Two-phase prediction on held-out scans"):
        for name, roles in PHASE1_VARIANTS.items():
            print(f"-- phase 1 by {name}", flush=True)
            predictor = TwoPhasePredictor([models[r] for r in roles], models["phase2"], settings)
            predict_folder(predictor, output / "test_images", output / "two_phase" / _variant_folder(name))

    rows: Dict[str, Dict[str, float]] = {}
    per_case: Dict[str, List[dict]] = {}
    per_level: Dict[str, Dict[str, float]] = {}
    evaluations: Dict[str, str] = {}
    with log.stage("Evaluate"):
        spineps = EvaluationOptions(labels=LabelSetup(scheme="spineps"))
        for name in PHASE1_VARIANTS:
            variant = _variant_folder(name)
            links = {kind: _collect(output / "two_phase" / variant, SUFFIXES[kind],
                                    output / "evaluation" / variant / f"{kind}_predictions")
                     for kind in ("semantic", "instance")}
            scores, per_case[name] = score_folders(output / "reference" / "semantic", links["semantic"],
                                                   output / "reference" / "instance", links["instance"])
            semantic = evaluate_folders(output / "reference" / "semantic", links["semantic"],
                                        output / "evaluation" / variant / "semantic", spineps)
            instance = evaluate_folders(output / "reference" / "instance", links["instance"],
                                        output / "evaluation" / variant / "instance", spineps)
            rows[name] = {**scores, **_subregion_means(semantic)}
            per_level[name] = _per_level_dice(instance)
            evaluations[name] = str(output / "evaluation" / variant)

    with log.stage("Results"):
        table = format_headline(rows)
        print(table)
        plots = output / "plots"
        plots.mkdir()
        curves = {}
        for role, model in models.items():
            curves[role] = plots / f"training_{role}.png"
            shutil.copy(model / "fold_all" / "progress.png", curves[role])
        summary = {"budget": budget.name, "device": device, "seed": seed, "held_out": held_out, "subjects": subjects,
                   "stage_seconds": log.timings, "total_seconds": round(sum(log.timings.values()), 1),
                   "stage_peak_memory_gib": log.peak_memory_gib,
                   "plans": {r: {"patch_size": c["patch_size"], "batch_size": c["batch_size"],
                                 "architecture": c["architecture"]} for r, c in phase1_plans.items()},
                   "training": {r: list(budget.training[r]) for r in ROLES},
                   "models": {k: str(v) for k, v in models.items()}, "headline": rows, "per_case": per_case,
                   "per_level_dice": per_level, "evaluations": evaluations}
        with open(output / "summary.json", "w") as f:
            json.dump(summary, f, indent=2)
        report = write_demo_report(output / "report.html", summary, output / "two_phase",
                                   output / "reference", output / "test_images", curves)
        print(f"\nreport: {report}; per-structure tables: {output / 'evaluation'}/*/*/summary.json and *.csv; "
              f"masks, centroids and snapshots: {output / 'two_phase'}; training curves: {plots}; "
              f"this table: {output / 'summary.json'}")
    return summary


HEADLINE_COLUMNS = ("Dice vertebrae", "Dice discs", "Dice canal", "Dice subregions", "PQ", "level accuracy")
"""The table's columns: union Dice of whole vertebrae / discs / canal, the mean per-subregion Dice,
vertebra PQ and level accuracy (see ``nnunetv2_symtc.evaluation.headline``)."""


def format_headline(rows: Dict[str, Dict[str, float]]) -> str:
    """The demo's results table: one row per two-phase run, ``HEADLINE_COLUMNS`` as columns."""
    header = "two-phase, phase 1 by (held-out scans)"
    width = max([len(header)] + [len(n) for n in rows])
    lines = [f"{header:<{width}}  " + "  ".join(f"{c:>15}" for c in HEADLINE_COLUMNS)]
    for name, row in rows.items():
        lines.append(f"{name:<{width}}  " + "  ".join(f"{row.get(c, float('nan')):>15.3f}" for c in HEADLINE_COLUMNS))
    return "\n".join(lines)
