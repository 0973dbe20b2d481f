"""Phase 1 (2D sagittal) trained on synthesised phantom images only, scored on real scans (issue 19).

    python benchmarks/real_scans.py -o /tmp/real_scans                      # the default run (2 CPU cores)
    python benchmarks/real_scans.py -o /tmp/real_scans --epochs 2 --iterations 5   # wiring check
    python benchmarks/real_scans.py -o /tmp/real_scans --baseline DEMO_MODEL_FOLDER  # with a baseline row

1. draws ``--train-subjects`` phantom subjects (``PhantomConfig.varied``: 0.5-1.5 mm in-plane,
   3-5 mm slices, top edge T12-L2, sacrum full or cut; per subject a random
   ``anatomy.ShapeVariation``: thin dark discs, short bodies, lordosis from flat to deep) with
   their generation label maps, converts them to an nnU-Net dataset (SPINEPS semantic targets)
   and attaches the maps (``synthesis.generation_labels``);
2. plans nnU-Net's 2d configuration at ``--spacing`` mm in plane (patch 160 x 160) with the CPU
   demo's U-Net widths, and preprocesses it;
3. trains ``nnUNetTrainerSynth_realscans`` through nnU-Net on synthesised images only, keeping a
   checkpoint every few epochs;
4. predicts with nnU-Net's predictor, as a user would, with every kept checkpoint: the real slices
   (``--real``: ``N.png`` + ``N.npy``; 1 disc, 2 vertebral body; written as one-slice PIR NIfTI
   at ``--real-spacing`` mm), tptbox's real T2w sample (cervical C5-C7, SPINEPS masks; if tptbox
   is installed) and held-out phantom subjects (seeds never trained on, their own rendered T2
   images). ``--baseline`` model folders (e.g. the demo's phase-1 models, fold ``all``) are scored
   the same way;
5. writes ``real_scans.md`` / ``.json`` (per case and mean Dice, the learning curve on the real
   slices) and ``real_scans_overlays.png`` into ``--results``.

Scores (predictions decoded to SPINEPS values): **vertebral body Dice**, predicted body 49 plus
endplates 52/53/62 against the reference body (real slices: value 2; SPINEPS references: the same
values); **disc Dice**, 100 against the reference disc; **whole-vertebra Dice** on SPINEPS
references (``evaluation.headline.WHOLE_VERTEBRA_VALUES``). A class is scored only on cases whose
reference has it (two real slices have an empty mask, one has discs only); the predicted pixel
counts are reported for every case. Nothing is tuned on the real slices: they are only predicted.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_REAL = REPO.parent / "shared" / "data" / "real_lumbar_2d"
DATASET_ID = 981
HELD_OUT_SEED_OFFSET = 100_000
PLANS = "nnUNetPlans_synth"
PATCH_SIZE = (160, 160)
UNET_FEATURES = (16, 32, 64, 128, 256)
TRAINER = "nnUNetTrainerSynth_realscans"
REAL_BODY, REAL_DISC = 2, 1
"""Values of the real slices' masks."""


def body_values() -> Tuple[int, ...]:
    """SPINEPS values scored as vertebral body: the body and its endplates."""
    from nnunetv2_symtc import labels as L

    return (L.VERTEBRAL_BODY, L.ENDPLATE, L.ENDPLATE_SUPERIOR, L.ENDPLATE_INFERIOR)


def reference_masks(reference: np.ndarray, real: bool) -> Tuple[np.ndarray, np.ndarray]:
    """(body, disc) masks of a reference: real-slice values (2, 1) or SPINEPS values."""
    from nnunetv2_symtc import labels as L

    if real:
        return reference == REAL_BODY, reference == REAL_DISC
    return np.isin(reference, body_values()), reference == L.DISC


def random_variation(rng: np.random.Generator, levels: Sequence[int]):
    """A random ``anatomy.ShapeVariation``: each disc thin and dark (height x 0.35-0.7) with
    probability 0.2, each body short (x 0.75-0.9) with probability 0.15, lordosis scale 0.4-1.6."""
    from nnunetv2_symtc.phantom.anatomy import ShapeVariation

    discs = tuple((int(v), float(rng.uniform(0.35, 0.7))) for v in levels if rng.random() < 0.2)
    bodies = tuple((int(v), float(rng.uniform(0.75, 0.9))) for v in levels if rng.random() < 0.15)
    return ShapeVariation(disc_height_factors=discs, body_height_factors=bodies,
                          lordosis_scale=float(rng.uniform(0.4, 1.6)))


def phantom_subjects(count: int, seed_offset: int) -> list:
    """``count`` (subject id, ``PhantomSubject``) of the varied phantom, seeds from ``seed_offset``."""
    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject

    base = PhantomConfig.varied(sequences=("t2",))
    subjects = []
    for seed in range(seed_offset, seed_offset + count):
        config = replace(base, variation=random_variation(np.random.default_rng([seed, 19]), base.levels))
        subjects.append((f"{seed:06d}", generate_subject(seed, config)))
    return subjects


def build_dataset(root: Path, train_subjects: int) -> Path:
    """Phantom subjects -> nnU-Net dataset with generation label maps; returns its raw folder."""
    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.phantom import write_spineps
    from nnunetv2_symtc.synthesis.generation_labels import attach_generation_labels, spineps_generation_files

    source = root / "sources" / "train"
    write_spineps(source, phantom_subjects(train_subjects, 0), generation_labels=True)
    raw = Path(convert_spineps(source, DATASET_ID, "SynthRealScans"))
    attach_generation_labels(raw, spineps_generation_files(raw, source))
    return raw


def plan(spacing: float, batch_size: int) -> None:
    """nnU-Net's 2d plan moved to ``spacing`` mm in plane, patch ``PATCH_SIZE``, the CPU demo's
    U-Net widths (one stride-1 stage, then stride 2), written as ``PLANS`` and preprocessed."""
    from nnunetv2_symtc.nnunet_runs import plan_dataset, preprocess_configuration

    folder = plan_dataset(DATASET_ID)
    plans = json.loads((folder / "nnUNetPlans.json").read_text())
    config = plans["configurations"]["2d"]
    planned_spacing = config["spacing"]
    config.update(spacing=[spacing, spacing], patch_size=list(PATCH_SIZE), batch_size=batch_size,
                  data_identifier=f"{PLANS}_2d")
    stages = len(UNET_FEATURES)
    config["architecture"]["arch_kwargs"].update(
        n_stages=stages, features_per_stage=list(UNET_FEATURES), kernel_sizes=[[3, 3]] * stages,
        strides=[[1, 1]] + [[2, 2]] * (stages - 1), n_conv_per_stage=[2] * stages,
        n_conv_per_stage_decoder=[2] * (stages - 1))
    plans.update(plans_name=PLANS, configurations={"2d": config})
    (folder / f"{PLANS}.json").write_text(json.dumps(plans, indent=2))
    print(f"plans {PLANS}: 2d at {spacing} mm (nnU-Net planned {planned_spacing}), patch {PATCH_SIZE}, "
          f"batch {batch_size}", flush=True)
    preprocess_configuration(DATASET_ID, "2d", PLANS)


def write_real_slices(real: Path, images: Path, spacing: float) -> Dict[str, np.ndarray]:
    """``N.png`` -> ``images/real_N_0000.nii.gz`` (one PIR sagittal slice: rows superior->inferior,
    columns anterior->posterior, ``spacing`` mm); returns case -> reference mask (rows, columns)."""
    from PIL import Image

    from nnunetv2_symtc.io import write_image
    from nnunetv2_symtc.phantom.painting import pir_geometry

    pngs = sorted(real.glob("*.png"), key=lambda p: (not p.stem.isdigit(), int(p.stem) if p.stem.isdigit() else 0, p.stem))
    if not pngs:
        raise FileNotFoundError(f"{real}: no real slices (N.png with N.npy)")
    references = {}
    for png in pngs:
        mask_file = png.with_suffix(".npy")
        if not mask_file.is_file():
            raise FileNotFoundError(f"{mask_file}: the mask of {png} is missing")
        image = np.asarray(Image.open(png).convert("L"), dtype=np.float32)
        mask = np.load(mask_file)
        if mask.shape != image.shape:
            raise ValueError(f"{mask_file}: shape {mask.shape} differs from {png} {image.shape}")
        case = f"real_{png.stem}"
        write_image(images / f"{case}_0000.nii.gz", image[None], pir_geometry((4.0, spacing, spacing), (0.0, 0.0, 0.0)))
        references[case] = mask
    return references


def write_phantom_test(images: Path, count: int) -> Dict[str, np.ndarray]:
    """Held-out phantom subjects (seeds never trained on): T2 images; returns case -> SPINEPS semantic mask."""
    from nnunetv2_symtc.io import write_image

    references = {}
    for sid, subject in phantom_subjects(count, HELD_OUT_SEED_OFFSET):
        case = f"phantom_{sid}"
        write_image(images / f"{case}_0000.nii.gz", subject.images["t2"].astype(np.float32), subject.geometry)
        references[case] = subject.spine_mask
    return references


def write_tptbox_case(images: Path) -> Dict[str, np.ndarray]:
    """tptbox's real T2w sample (PIR, cervical C5-C7) as case ``tptbox``; returns case -> SPINEPS
    semantic mask, or nothing (with a message) when tptbox is not installed."""
    try:
        import TPTBox
    except ImportError:
        print("tptbox is not installed: its real T2w sample is not scored (pip install tptbox)", flush=True)
        return {}
    from nnunetv2_symtc.io import read_image, write_image

    folder = Path(TPTBox.__file__).parent / "tests" / "sample_mri"
    image, geometry = read_image(folder / "sub-mri_label-6_T2w.nii.gz")
    semantic, _ = read_image(folder / "sub-mri_seg-subreg_label-6_msk.nii.gz")
    write_image(images / "tptbox_0000.nii.gz", image.astype(np.float32), geometry)
    return {"tptbox": semantic}


def predict(model: Path, checkpoint: str, images: Path, output: Path, device: str) -> None:
    """nnU-Net's predictor (fold ``all``, mirroring, Gaussian tiles) on every image of ``images``."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True,
                                device=torch.device(device), verbose=False, verbose_preprocessing=False,
                                allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=("all",), checkpoint_name=checkpoint)
    predictor.predict_from_files(str(images), str(output), save_probabilities=False, overwrite=True,
                                 num_processes_preprocessing=1, num_processes_segmentation_export=1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * int((a & b).sum()) / (int(a.sum()) + int(b.sum()))


def score(predictions: Path, references: Dict[str, np.ndarray], model: Path, real: bool) -> Dict[str, dict]:
    """Per case: body and disc Dice (``None`` where the reference lacks the class), predicted pixel
    counts and, on SPINEPS references, whole-vertebra Dice."""
    from nnunetv2_symtc import labels as L
    from nnunetv2_symtc.evaluation.headline import WHOLE_VERTEBRA_VALUES
    from nnunetv2_symtc.instance.phase2_spec import phase1_label_map, read_dataset_json
    from nnunetv2_symtc.io import read_image

    label_map = phase1_label_map("spineps", read_dataset_json(model)["labels"])
    rows = {}
    for case, reference in references.items():
        values = label_map.decode(read_image(predictions / f"{case}.nii.gz")[0])
        values = values[0] if real else values
        body, disc = np.isin(values, body_values()), values == L.DISC
        ref_body, ref_disc = reference_masks(reference, real)
        row = {"body_dice": dice(body, ref_body) if ref_body.any() else None,
               "disc_dice": dice(disc, ref_disc) if ref_disc.any() else None,
               "predicted_body_px": int(body.sum()), "predicted_disc_px": int(disc.sum())}
        if not real:
            row["vertebra_dice"] = dice(np.isin(values, WHOLE_VERTEBRA_VALUES), np.isin(reference, WHOLE_VERTEBRA_VALUES))
        rows[case] = row
    return rows


def mean(rows: Dict[str, dict], key: str) -> Optional[float]:
    values = [r[key] for r in rows.values() if r.get(key) is not None]
    return float(np.mean(values)) if values else None


def evaluate(model: Path, checkpoint: str, sets: Dict[str, Tuple[Path, Dict[str, np.ndarray]]], output: Path,
             device: str) -> Dict[str, Dict[str, dict]]:
    """Predict and score every set (name -> (images folder, references)); returns name -> case -> row."""
    rows = {}
    for name, (images, references) in sets.items():
        if references:
            predict(model, checkpoint, images, output / name, device)
            rows[name] = score(output / name, references, model, real=name == "real")
    return rows


def means(rows: Dict[str, Dict[str, dict]]) -> Dict[str, Optional[float]]:
    """Mean body / disc Dice on the real slices, and body / disc / whole-vertebra Dice on the phantom."""
    out = {"real body Dice": mean(rows["real"], "body_dice"), "real disc Dice": mean(rows["real"], "disc_dice")}
    if "phantom" in rows:
        out.update({f"phantom {k} Dice": mean(rows["phantom"], f"{k}_dice") for k in ("body", "disc", "vertebra")})
    return out


def _rgb(image: np.ndarray) -> np.ndarray:
    lo, hi = np.percentile(image, (1, 99))
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1) * 255
    return np.repeat(grey[..., None], 3, axis=-1)


def _paint(rgb: np.ndarray, body: np.ndarray, disc: np.ndarray) -> np.ndarray:
    """Body red, disc green, half transparent."""
    rgb = rgb.copy()
    rgb[body] = 0.5 * rgb[body] + [127, 0, 0]
    rgb[disc] = 0.5 * rgb[disc] + [0, 127, 0]
    return rgb


def write_overlays(images: Path, predictions: Path, references: Dict[str, Dict[str, np.ndarray]], model: Path,
                   out: Path) -> None:
    """One PNG, a column per case (image, reference, prediction; body red, disc green): every real
    slice, then the mid-sagittal slice of the first held-out phantom subject and of tptbox's sample."""
    from PIL import Image

    from nnunetv2_symtc import labels as L
    from nnunetv2_symtc.instance.phase2_spec import phase1_label_map, read_dataset_json
    from nnunetv2_symtc.io import read_image

    label_map = phase1_label_map("spineps", read_dataset_json(model)["labels"])
    cases = [("real", c) for c in references["real"]] + [(s, sorted(references[s])[0]) for s in ("phantom", "tptbox")
                                                         if references.get(s)]
    columns = []
    height = None
    for name, case in cases:
        volume = read_image(images / name / f"{case}_0000.nii.gz")[0]
        values = label_map.decode(read_image(predictions / name / f"{case}.nii.gz")[0])
        reference = references[name][case]
        mid = 0 if name == "real" else volume.shape[0] // 2
        reference = reference if name == "real" else reference[mid]
        ref_body, ref_disc = reference_masks(reference, name == "real")
        rgb = _rgb(volume[mid])
        column = np.concatenate([rgb, _paint(rgb, ref_body, ref_disc),
                                 _paint(rgb, np.isin(values[mid], body_values()), values[mid] == L.DISC)]).astype(np.uint8)
        height = height or column.shape[0]
        if column.shape[0] != height:
            width = max(1, round(column.shape[1] * height / column.shape[0]))
            column = np.asarray(Image.fromarray(column).resize((width, height), Image.NEAREST))
        columns.append(column)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(columns, axis=1)).save(out)


def _cell(value: Optional[float]) -> str:
    return "–" if value is None else f"{value:.3f}"


def format_table(summary: dict) -> str:
    """Markdown: means per model, per case Dice of the trained model, the learning curve."""
    lines = [f"# Real scans: {summary['trainer']}, {summary['epochs']} epochs x {summary['iterations_per_epoch']} "
             f"iterations (batch {summary['batch_size']}, {summary['spacing_mm']} mm), {summary['train_subjects']} "
             f"phantom subjects, {summary['device']}", "",
             f"`{summary['command']}`; seconds: {summary['seconds']}", "",
             "| model | real body Dice | real disc Dice | phantom body Dice | phantom disc Dice | phantom vertebra Dice |",
             "|---|---|---|---|---|---|"]
    for model, m in summary["means"].items():
        lines.append(f"| {model} | " + " | ".join(_cell(m.get(k)) for k in (
            "real body Dice", "real disc Dice", "phantom body Dice", "phantom disc Dice", "phantom vertebra Dice")) + " |")
    lines += ["", "Per case (the synthesis model; – where the reference has no such class):", "",
              "| case | body Dice | disc Dice | whole vertebra Dice | predicted body / disc px |", "|---|---|---|---|---|"]
    for rows in summary["cases"].values():
        for case, row in rows.items():
            lines.append(f"| {case} | {_cell(row['body_dice'])} | {_cell(row['disc_dice'])} | "
                         f"{_cell(row.get('vertebra_dice'))} | {row['predicted_body_px']} / {row['predicted_disc_px']} |")
    lines += ["", "Learning curve on the real slices (mean Dice):", "", "| epoch | iterations | body | disc |",
              "|---|---|---|---|"]
    lines += [f"| {p['epoch']} | {p['iterations']} | {_cell(p['real body Dice'])} | {_cell(p['real disc Dice'])} |"
              for p in summary["learning_curve"]]
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, required=True, help="working folder (nnU-Net folders, predictions)")
    parser.add_argument("--real", type=Path, default=DEFAULT_REAL, help="folder of real slices N.png + N.npy")
    parser.add_argument("--real-spacing", type=float, default=1.1, help="pixel spacing of the real slices, mm")
    parser.add_argument("--train-subjects", type=int, default=24)
    parser.add_argument("--test-subjects", type=int, default=4)
    parser.add_argument("--spacing", type=float, default=1.5, help="in-plane training spacing, mm")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=int, help=f"default: {TRAINER}'s")
    parser.add_argument("--iterations", type=int, help=f"iterations per epoch; default: {TRAINER}'s")
    parser.add_argument("--checkpoint-every", type=int, help=f"epochs between learning-curve points; default: {TRAINER}'s")
    parser.add_argument("--baseline", type=Path, action="append", default=[],
                        help="a trained 2d SPINEPS-semantic model folder (fold all) to score the same way; repeatable")
    parser.add_argument("-device", default="cpu")
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results",
                        help="where real_scans.md / .json and the overlays go")
    args = parser.parse_args(argv)
    for folder in args.baseline:
        if not (folder / "fold_all" / "checkpoint_final.pth").is_file():
            parser.error(f"--baseline {folder}: no fold_all/checkpoint_final.pth (a model trained on fold all)")

    from nnunetv2_symtc.nnunet_runs import default_process_counts, use_nnunet_folders

    output = args.output.resolve()
    use_nnunet_folders(output / "nnunet")
    default_process_counts()
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    start = time.perf_counter()
    seconds = {}
    sets = {"real": (output / "images" / "real", write_real_slices(args.real, output / "images" / "real", args.real_spacing)),
            "phantom": (output / "images" / "phantom", write_phantom_test(output / "images" / "phantom", args.test_subjects)),
            "tptbox": (output / "images" / "tptbox", write_tptbox_case(output / "images" / "tptbox"))}
    build_dataset(output, args.train_subjects)
    plan(args.spacing, args.batch_size)
    seconds["data and planning"] = time.perf_counter() - start

    trainer = get_trainer_from_args(str(DATASET_ID), "2d", "all", TRAINER, PLANS, device=torch.device(args.device))
    for attribute, value in (("num_epochs", args.epochs), ("num_iterations_per_epoch", args.iterations),
                             ("learning_curve_every", args.checkpoint_every)):
        if value is not None:
            setattr(trainer, attribute, value)
    t0 = time.perf_counter()
    trainer.run_training()
    seconds["training"] = time.perf_counter() - t0
    model = Path(trainer.output_folder).parent
    epochs, iterations, every = trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.learning_curve_every

    t0 = time.perf_counter()
    curve = []
    for epoch in range(every, epochs, every):
        name = f"checkpoint_epoch_{epoch}.pth"
        rows = evaluate(model, name, {"real": sets["real"]}, output / "predictions" / name[:-4], args.device)
        curve.append({"epoch": epoch, "iterations": epoch * iterations, **means(rows)})
        print(f"epoch {epoch}: {means(rows)}", flush=True)
    final_predictions = output / "predictions" / "checkpoint_final"
    final = evaluate(model, "checkpoint_final.pth", sets, final_predictions, args.device)
    curve.append({"epoch": epochs, "iterations": epochs * iterations, **means(final)})
    summary_means = {f"synthesis ({TRAINER})": means(final)}
    for folder in args.baseline:
        rows = evaluate(folder, "checkpoint_final.pth", sets, output / "predictions" / f"baseline_{folder.name}", args.device)
        summary_means[f"baseline {folder.name}"] = means(rows)
    seconds["prediction and scoring"] = time.perf_counter() - t0

    summary = {"command": " ".join(["benchmarks/real_scans.py"] + (argv if argv is not None else sys.argv[1:])),
               "trainer": TRAINER, "epochs": epochs, "iterations_per_epoch": iterations, "batch_size": args.batch_size,
               "spacing_mm": args.spacing, "train_subjects": args.train_subjects, "device": args.device,
               "seconds": {k: round(v, 1) for k, v in seconds.items()}, "means": summary_means,
               "cases": final, "learning_curve": curve}
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "real_scans.json").write_text(json.dumps(summary, indent=2))
    write_overlays(output / "images", final_predictions, {k: refs for k, (_, refs) in sets.items()}, model,
                   args.results / "real_scans_overlays.png")
    (args.results / "real_scans.md").write_text(format_table(summary))
    print(format_table(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
