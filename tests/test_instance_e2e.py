"""Tiny end-to-end two-phase run on the phantom: train both phases through nnU-Net (CPU, a few
iterations), then ``symtc predict``. A tiny model is not accurate; this checks the wiring, the
geometry, the label sets and the records."""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.instance.cutouts import CutoutSpec
from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset, phase2_cases
from nnunetv2_symtc.instance.phase2_spec import Phase2Spec
from nnunetv2_symtc.inference.inputs import SUFFIXES
from nnunetv2_symtc.inference.two_phase import PredictionSettings, TwoPhasePredictor
from nnunetv2_symtc.instance.assemble import assemble_instances
from nnunetv2_symtc.io import to_sitk
from nnunetv2_symtc.labels import (SPINEPS_SEMANTIC_NAMES, instance_value_name, is_spineps_instance_value)
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps

INSTANCE_DATASET_ID = 911
CUTOUT = CutoutSpec((48.0, 120.0, 96.0), (4.0, 3.0, 3.0))


def train_fold0(dataset_id: int, trainer_name: str) -> Path:
    """Train fold 0 (3d_fullres, CPU) through nnU-Net's trainer lookup; returns the model folder."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), "3d_fullres", 0, trainer_name, "nnUNetPlans",
                                    device=torch.device("cpu"))
    trainer.run_training()
    return Path(trainer.output_folder).parent


@pytest.fixture(scope="module")
def instance_model(nnunet_dirs, tmp_path_factory):
    """A tiny phase-2 model trained on cutouts of two phantom subjects."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    source = write_spineps(tmp_path_factory.mktemp("phase2_source"),
                           [(f"{i}", generate_subject(100 + i, PhantomConfig.tiny())) for i in range(2)])
    build_instance_dataset(source, INSTANCE_DATASET_ID, "TinyInstances", cutout=CUTOUT)
    extract_fingerprints([INSTANCE_DATASET_ID], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
    plan_experiments([INSTANCE_DATASET_ID])
    preprocess([INSTANCE_DATASET_ID], configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)
    return train_fold0(INSTANCE_DATASET_ID, "SpinepsInstanceTrainer_tiny")


@pytest.fixture(scope="module")
def models(tiny_dataset_3d, instance_model):
    return train_fold0(tiny_dataset_3d.dataset_id, "SpinepsInstanceTrainer_tiny"), instance_model


@pytest.mark.slow
def test_two_phase_prediction_end_to_end(models, tmp_path):
    import torch

    semantic_model, instance_model = models
    checkpoint = torch.load(instance_model / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert tuple(checkpoint["inference_allowed_mirroring_axes"]) == (2,), "phase 2 may mirror anterior-posterior only"

    subject = generate_subject(200, PhantomConfig.tiny())
    images = tmp_path / "images"
    images.mkdir()
    # a sagittal scan stored in LPS order: predicted in PIR, written back on this grid
    original = sitk.DICOMOrient(to_sitk(subject.images["t2"].astype(np.float32), subject.geometry), "LPS")
    sitk.WriteImage(original, str(images / "phantom_0000.nii.gz"))
    out = tmp_path / "out"
    argv = ["predict", "-i", str(images), "-o", str(out), "--semantic-model", str(semantic_model),
            "--instance-model", str(instance_model), "-f", "0", "-device", "cpu", "--save-probabilities"]
    assert main(argv) == 0

    for key in ("semantic", "instance", "centroids", "snapshot", "metadata", "probabilities"):
        assert (out / f"phantom{SUFFIXES[key]}").is_file(), key
    for key in ("semantic", "instance"):
        mask = sitk.ReadImage(str(out / f"phantom{SUFFIXES[key]}"))
        assert mask.GetSize() == original.GetSize() and np.allclose(mask.GetSpacing(), original.GetSpacing())
        assert np.allclose(mask.GetOrigin(), original.GetOrigin(), atol=1e-3)
        assert np.allclose(mask.GetDirection(), original.GetDirection())
    semantic = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"phantom{SUFFIXES['semantic']}")))
    instance = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"phantom{SUFFIXES['instance']}")))
    assert set(np.unique(semantic).tolist()) <= {0} | set(SPINEPS_SEMANTIC_NAMES)
    assert all(is_spineps_instance_value(int(v)) for v in np.unique(instance))
    centroids = json.loads((out / f"phantom{SUFFIXES['centroids']}").read_text())
    assert set(centroids) == {instance_value_name(int(v)) for v in np.unique(instance) if v}
    assert all(set(c) == {"value", "world_mm_xyz", "voxel_zyx"} for c in centroids.values())
    metadata = json.loads((out / f"phantom{SUFFIXES['metadata']}").read_text())
    assert metadata["semantic_models"] == [{"folder": str(semantic_model), "folds": ["0"]}]
    assert metadata["instance_model"] == {"folder": str(instance_model), "folds": ["0"]}
    assert metadata["package_version"] and metadata["naming"]["rule"] and isinstance(metadata["warnings"], list)
    assert metadata["input_orientation"] == "LPS" and metadata["reoriented_for_models"]
    assert set(metadata["timings"]) == {"phase1_s", "phase2_s", "other_s"}
    assert (out / f"phantom{SUFFIXES['snapshot']}").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    probabilities = np.load(out / f"phantom{SUFFIXES['probabilities']}")["probabilities"]
    assert probabilities.shape == (len(SPINEPS_SEMANTIC_NAMES) + 1,) + instance.shape

    # resume: a finished case is skipped
    stamp = (out / f"phantom{SUFFIXES['metadata']}").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / f"phantom{SUFFIXES['metadata']}").stat().st_mtime_ns == stamp
    # -num_parts/-part_id: the only case belongs to part 0, so part 1 redoes nothing even with --overwrite
    assert main(argv + ["--overwrite", "-num_parts", "2", "-part_id", "1"]) == 0
    assert (out / f"phantom{SUFFIXES['metadata']}").stat().st_mtime_ns == stamp

    # phase 2 through the trained network, on cutouts around the true bodies
    predictor = TwoPhasePredictor([semantic_model], instance_model, PredictionSettings(folds=["0"], device="cpu"))
    spec = Phase2Spec.from_dataset_json(json.loads((instance_model / "dataset.json").read_text()))
    cases = list(phase2_cases(subject.spine_mask, subject.vert_mask, subject.geometry.spacing_zyx, spec))
    predictions = predictor.instance_predictions([c.inputs for c in cases])
    assert [p.shape for p in predictions] == [CUTOUT.shape] * len(cases)
    # phase 2 batched across cutouts (the default) = nnU-Net's own per-image sliding window
    one_by_one = TwoPhasePredictor([semantic_model], instance_model,
                                   PredictionSettings(folds=["0"], device="cpu", phase2_batch_size=1))
    reference = one_by_one.instance_predictions([c.inputs for c in cases])
    agreement = np.mean([np.mean(a == b) for a, b in zip(predictions, reference)])
    assert agreement > 0.999, agreement
    assert set(np.unique(np.stack(predictions)).tolist()) <= {0, 1, 2, 3}
    output = assemble_instances(subject.spine_mask, predictions, [c.cutout for c in cases],
                                subject.geometry.spacing_zyx, None, spec.lowest_vertebra, spec.naming_convention)
    assert output.instance.shape == subject.shape and len(output.metadata["merge"]) >= 1


@pytest.mark.slow
def test_semantic_input_skips_phase1(instance_model, tmp_path):
    """``--semantic-input``: phase 2 and everything after it on a given semantic mask, no semantic model."""
    subject = generate_subject(201, PhantomConfig.tiny())
    images, masks, out = tmp_path / "images", tmp_path / "masks", tmp_path / "out"
    images.mkdir(), masks.mkdir()
    original = sitk.DICOMOrient(to_sitk(subject.images["t2"].astype(np.float32), subject.geometry), "LPS")
    sitk.WriteImage(original, str(images / "phantom_0000.nii.gz"))
    given = sitk.DICOMOrient(to_sitk(subject.spine_mask, subject.geometry), "LPS")
    sitk.WriteImage(given, str(masks / f"phantom{SUFFIXES['semantic']}"))
    argv = ["predict", "-i", str(images), "-o", str(out), "--semantic-input", str(masks),
            "--instance-model", str(instance_model), "-f", "0", "-device", "cpu"]
    assert main(argv) == 0
    semantic = sitk.ReadImage(str(out / f"phantom{SUFFIXES['semantic']}"))
    assert semantic.GetSize() == original.GetSize() and np.allclose(semantic.GetOrigin(), original.GetOrigin())
    assert np.array_equal(sitk.GetArrayFromImage(semantic), sitk.GetArrayFromImage(given)), "used as given"
    instance = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"phantom{SUFFIXES['instance']}")))
    assert all(is_spineps_instance_value(int(v)) for v in np.unique(instance))
    metadata = json.loads((out / f"phantom{SUFFIXES['metadata']}").read_text())
    assert metadata["semantic_input"] == str(masks) and metadata["semantic_models"] == []
    assert "phase1_s" not in metadata["timings"] and metadata["cleaning"] == "semantic mask given: used as given"
    assert metadata["candidates"]["kept"] == len(metadata["centres"]) >= 1
    assert (out / f"phantom{SUFFIXES['snapshot']}").is_file()
