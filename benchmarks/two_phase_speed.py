"""Per-case time of ``symtc predict``: phase 1, phase 2 and everything else.

A realistic phantom lumbar scan (default ~15 x 500 x 510 voxels at 4 x 0.55 x 0.55 mm) is run
through the steps of ``TwoPhasePredictor``:

- **everything else** (no network): reading and checking the input (twice: ``predict_folder``
  checks every input before any model runs), decoding the phase-1 classes to SPINEPS labels,
  cleaning, body centres, cutouts + input encoding, merge + post-processing (orphans, naming, discs,
  endplates), writing every output (masks, centroids, snapshot, metadata). It runs on the phantom's
  true semantic mask and the true phase-2 answers, so it does the work an accurate model would cause.
- **phase 1 / phase 2**: nnU-Net's predictor (its own preprocessing, sliding window, resampling) on
  the same volume and cutouts, with untrained networks planned by nnU-Net on one phantom subject
  (a forward pass costs the same trained or not). ``--skip-networks`` leaves them out.

Prints a table with wall-clock and CPU seconds (CPU time of this process: on a busy machine it
approximates the wall time on free cores) and shares of the total. Targets: everything else < 10 % of the total and < 5 s per
case on a 2-core CPU. The phase-2 cutout defaults to SPINEPS's (64 x 304 x 248 voxels); on a CPU,
``--cutout-spacing 3.3 1.5 1.5`` keeps the phase-2 network time bearable.

    python benchmarks/two_phase_speed.py [--shape-spacing 4 0.55 0.55] [--device cpu] [--skip-networks]
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("nnUNet_def_n_proc", "1")
os.environ.setdefault("nnUNet_compile", "f")


def _clock(timings: dict, key: str, function, *args, **kwargs):
    """Run ``function`` and add its wall-clock and CPU seconds (this process) to ``timings[key]``."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = function(*args, **kwargs)
    previous = timings.get(key, (0.0, 0.0))
    timings[key] = (previous[0] + time.perf_counter() - wall, previous[1] + time.process_time() - cpu)
    return result


def everything_else(subject, spec, folder: Path) -> dict:
    """Seconds per non-network step for one case (true semantic and phase-2 answers)."""
    from nnunetv2_symtc.instance.centres import clean_semantic, vertebral_body_centres
    from nnunetv2_symtc.instance.cutouts import make_cutout
    from nnunetv2_symtc.dataset_conversion.phase2_cutouts import phase2_cases
    from nnunetv2_symtc.inference.inputs import load_input_case
    from nnunetv2_symtc.inference.outputs import write_case
    from nnunetv2_symtc.instance.assemble import assemble_instances
    from nnunetv2_symtc.io import to_sitk
    from nnunetv2_symtc.labels import spineps_semantic_map

    path = folder / "case_0000.nii.gz"
    sitk.WriteImage(to_sitk(subject.images["t2"].astype(np.float32), subject.geometry), str(path))
    label_map = spineps_semantic_map()
    classes = label_map.encode(subject.spine_mask)
    answers = {tuple(np.round(c.cutout.centre_index, 3)): c.target
               for c in phase2_cases(subject.spine_mask, subject.vert_mask, subject.geometry.spacing_zyx, spec)}

    t = {}
    _clock(t, "read + check input", load_input_case, "case", [path], 1, 3)
    case = _clock(t, "read + check input", load_input_case, "case", [path], 1, 3)
    semantic = _clock(t, "decode phase-1 classes", label_map.decode, classes)
    semantic, _ = _clock(t, "clean semantic", clean_semantic, semantic)
    spacing = case.geometry.spacing_zyx
    centres = _clock(t, "body centres", vertebral_body_centres, semantic, spacing)
    cutouts = _clock(t, "cutouts + encode", lambda: [make_cutout(c.index_zyx, semantic.shape, spacing, spec.cutout)
                                                     for c in centres])
    _clock(t, "cutouts + encode", lambda: [spec.encode(semantic, c) for c in cutouts])
    predictions = []
    for c in cutouts:  # the true answer of the nearest ground-truth cutout (centres differ slightly)
        nearest = min(answers, key=lambda k: np.linalg.norm(np.subtract(k, c.centre_index)))
        predictions.append(answers[nearest])
    output = _clock(t, "merge + post-process", assemble_instances, semantic, predictions, cutouts, spacing, None,
                    spec.lowest_vertebra, spec.naming_convention)
    output.metadata["timings"] = {}
    _clock(t, "write outputs", write_case, folder / "out", case, output, False, False, {})
    t["_vertebrae"] = len([r for r in output.metadata["merge"] if r["vertebra"]])
    t["_case"] = case
    t["_inputs"] = [spec.encode(semantic, c) for c in cutouts]
    return t


def untrained_model(dataset_id: int, raw_case_writer, results: Path) -> Path:
    """Plan + preprocess a dataset with nnU-Net and save an untrained 3d_fullres fold-0 checkpoint."""
    import torch
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    from nnunetv2.run.run_training import get_trainer_from_args

    raw_case_writer()
    extract_fingerprints([dataset_id], num_processes=1, check_dataset_integrity=False, show_progress_bar=False)
    plan_experiments([dataset_id])
    preprocess([dataset_id], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    trainer = get_trainer_from_args(str(dataset_id), "3d_fullres", 0, "SpinepsInstanceTrainer", "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.initialize()
    trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    folder = Path(trainer.output_folder)
    folder.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(str(folder / "checkpoint_final.pth"))
    for name, content in (("plans.json", trainer.plans_manager.plans), ("dataset.json", trainer.dataset_json)):
        (folder.parent / name).write_text(json.dumps(content))  # what nnU-Net writes when training starts
    return folder.parent


def networks(train_subject, tmp: Path, cutout, timings: dict, device: str, tta: bool) -> None:
    """Add phase-1 and phase-2 seconds for the case of ``timings`` (untrained nnU-Net models)."""
    from nnunetv2_symtc.demo import use_nnunet_folders

    use_nnunet_folders(tmp)
    from nnunetv2_symtc.dataset_conversion import convert_spineps
    from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset
    from nnunetv2_symtc.inference.two_phase import PredictionSettings, TwoPhasePredictor
    from nnunetv2_symtc.phantom import write_spineps

    source = write_spineps(tmp / "bids", [("train", train_subject)])
    semantic = untrained_model(951, lambda: convert_spineps(source, 951, "BenchSpine"), tmp / "nnUNet_results")
    instance = untrained_model(952, lambda: build_instance_dataset(source, 952, "BenchInstances", cutout=cutout),
                               tmp / "nnUNet_results")
    predictor = TwoPhasePredictor([semantic], instance, PredictionSettings(folds=["0"], device=device,
                                                                           use_mirroring=tta))
    predictor.load_models()
    _clock(timings, "phase 1 (nnU-Net)", predictor.semantic_prediction, timings["_case"])
    _clock(timings, "phase 2 (nnU-Net)", predictor.instance_predictions, timings["_inputs"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spacing", nargs=3, type=float, default=(4.0, 0.55, 0.55), help="phantom spacing (LR SI AP) mm")
    parser.add_argument("--slices", type=int, default=15, help="sagittal slices")
    parser.add_argument("--fov-ap", type=float, default=280.0, help="anterior-posterior field of view, mm")
    parser.add_argument("--cutout-spacing", nargs=3, type=float, default=None,
                        help="phase-2 working spacing (default SPINEPS's 1.65 0.75 0.75)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tta", action="store_true", help="mirroring test-time augmentation in the network phases")
    parser.add_argument("--skip-networks", action="store_true", help="only time everything else")
    args = parser.parse_args()

    import torch
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")) if args.device == "cpu" else 1)
    from nnunetv2_symtc.instance.cutouts import CutoutSpec
    from nnunetv2_symtc.instance.phase2_spec import Phase2Spec
    from nnunetv2_symtc.labels import spineps_semantic_map
    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject

    default = CutoutSpec.spineps_default()
    cutout = CutoutSpec(default.size_mm_zyx, tuple(args.cutout_spacing or default.spacing_zyx))
    spec = Phase2Spec(cutout, "spineps", spineps_semantic_map().dataset_json_labels())
    config = PhantomConfig(spacing_zyx=tuple(args.spacing), n_slices=args.slices, fov_ap_mm=args.fov_ap,
                           supersample=1, sequences=("t2",))
    subject = generate_subject(1, config)
    with tempfile.TemporaryDirectory(prefix="symtc-two-phase-bench-") as tmp:
        tmp = Path(tmp)
        timings = everything_else(subject, spec, tmp)
        if not args.skip_networks:
            networks(generate_subject(2, config), tmp, cutout, timings, args.device, args.tta)
    case = timings.pop("_case")
    timings.pop("_inputs")
    vertebrae = timings.pop("_vertebrae")
    network_keys = [k for k in timings if "nnU-Net" in k]
    other = [sum(v[i] for k, v in timings.items() if k not in network_keys) for i in (0, 1)]
    total = [sum(v[i] for v in timings.values()) for i in (0, 1)]
    print(f"case: {case.data.shape[1:]} voxels at {case.geometry.spacing_zyx} mm, {vertebrae} vertebrae, "
          f"phase-2 cutout {cutout.shape} at {cutout.spacing_zyx} mm, device {args.device}, "
          f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']}")
    print(f"{'step':<28}{'wall s':>9}{'cpu s':>9}{'cpu share':>11}")
    for key, (wall, cpu) in timings.items():
        print(f"{key:<28}{wall:>9.3f}{cpu:>9.3f}{100 * cpu / total[1]:>10.1f}%")
    print(f"{'everything else':<28}{other[0]:>9.3f}{other[1]:>9.3f}{100 * other[1] / total[1]:>10.1f}%"
          "   target < 10% and < 5 s")
    print(f"{'total':<28}{total[0]:>9.3f}{total[1]:>9.3f}")


if __name__ == "__main__":
    main()
