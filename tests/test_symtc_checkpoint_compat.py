"""A SymTC model trained before the plans owned the network still loads and predicts identically.

Fixture ``fixtures/symtc_tiny_2d_pre_plans`` (made once, with the code of commit 603a883):
``SymTCTrainer_tiny`` trained on plain ``nnUNetPlans`` (2d) for one tiny epoch on a 6-subject
phantom dataset; checkpoint reduced to what nnU-Net's predictor reads, weights rounded to bf16
values (stored as fp32, zip-deflated, so the folder stays small); one 1×64×48 input slice and
the probabilities (.npz) and segmentation nnU-Net's predictor wrote for it with that code.
"""
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

from nnunetv2_symtc.networks import SymTC

FIXTURE = Path(__file__).parent / "fixtures" / "symtc_tiny_2d_pre_plans"


def test_pre_change_checkpoint_predicts_identically(tmp_path):
    """Through nnU-Net's own predictor. Tolerance 2e-4 on probabilities: the same fp32 math with
    another torch build or CPU may take other kernels (summation order); measured up to 4.5e-5
    (7 of 46080 values) with torch 2.14.1 against the fixture's build. Any change to the network
    or its state dict moves them by > 1e-3, and the segmentation must match exactly."""
    torch.set_num_threads(1)
    predictor = nnUNetPredictor(device=torch.device("cpu"), perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(FIXTURE / "model"), use_folds=(0,))
    assert predictor.trainer_name == "SymTCTrainer_tiny" and isinstance(predictor.network, SymTC)
    weights = torch.load(FIXTURE / "model" / "fold_0" / "checkpoint_final.pth", map_location="cpu",
                         weights_only=False)["network_weights"]
    result = predictor.network.load_state_dict(weights, strict=True)
    assert not result.missing_keys and not result.unexpected_keys

    predictor.predict_from_files_sequential([[str(FIXTURE / "input" / "case_0000.nii.gz")]], [str(tmp_path / "case")],
                                            save_probabilities=True)
    expected = np.load(FIXTURE / "expected" / "case.npz")["probabilities"]
    got = np.load(tmp_path / "case.npz")["probabilities"]
    assert got.shape == expected.shape == (15, 1, 64, 48)
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-4)
    segmentation = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "case.nii.gz")))
    np.testing.assert_array_equal(
        segmentation, sitk.GetArrayFromImage(sitk.ReadImage(str(FIXTURE / "expected" / "case.nii.gz"))))
