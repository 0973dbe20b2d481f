"""SymTC memory-aware plans and training recipes (pure functions; the nnU-Net run is in test_symtc_nnunet)."""
import json

import pytest
import torch

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.networks.from_plans import build_symtc
from nnunetv2_symtc.training.recipes import (WarmupCosineLR, clip_gradients_before_step,
                                             deep_supervision_weights)
from nnunetv2_symtc.training.symtc_plans import (GIB, estimate_training_memory, fit_configuration,
                                                 symtc_patch_size)


def test_patches_are_rounded_to_symtc_strides_and_token_limits():
    assert symtc_patch_size((320, 250), (0.5, 0.5)) == [320, 256]
    assert symtc_patch_size((320, 246), (0.5, 0.5)) == [320, 240]
    assert symtc_patch_size((14, 252, 900), (3.3, 0.5, 0.5)) == [16, 256, 512]   # <= 32 tokens per axis
    for patch, spacing in (((80, 72), (1, 1)), ((14, 252, 260), (3.3, 0.5, 0.5)), ((20, 40, 40), (2, 2, 2))):
        build_symtc(symtc_patch_size(patch, spacing), spacing, 1, 3, width="tiny")  # valid: no error


def test_memory_estimate_grows_with_batch_and_patch_and_fits_the_budget():
    small = estimate_training_memory((256, 256), (1, 1), 1, 12)
    assert estimate_training_memory((256, 256), (1, 1), 2, 12) > small
    assert estimate_training_memory((512, 512), (1, 1), 1, 12) > small
    for budget in (4, 12, 40):
        fit = fit_configuration((512, 512), (1, 1), 12, budget)
        assert fit["estimated_memory_gib"] <= budget
        assert estimate_training_memory(fit["patch_size"], (1, 1), fit["batch_size"] + 1, 12) > budget * GIB \
            or fit["batch_size"] == 64
    assert fit_configuration((512, 512), (1, 1), 12, 40, max_batch_size=3)["batch_size"] == 3
    shrunk = fit_configuration((512, 512), (1, 1), 12, 3.2)
    assert shrunk["patch_size"] != [512, 512] and all(p % 16 == 0 for p in shrunk["patch_size"])


def test_plan_symtc_cli_writes_a_plans_transfer(tmp_path, monkeypatch):
    folder = tmp_path / "Dataset905_Fake"
    folder.mkdir()
    plans = {"plans_name": "nnUNetPlans", "dataset_name": "Dataset905_Fake", "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [520, 500], "spacing": [0.5, 0.5], "batch_size": 12},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [14, 250, 250],
                       "spacing": [3.3, 0.5, 0.5], "batch_size": 2},
        "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}}}
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, **{f"c{i}": i for i in range(1, 12)}},
                                                     "channel_names": {"0": "T2"}}))
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["plan-symtc", "-d", "Dataset905_Fake", "-gpu_memory_target", "24"]) == 0
    out = json.loads((folder / "nnUNetPlans_SymTC.json").read_text())
    assert out["plans_name"] == "nnUNetPlans_SymTC"
    two, three = out["configurations"]["2d"], out["configurations"]["3d_fullres"]
    assert two["patch_size"] == [512, 496] and 1 <= two["batch_size"] <= 12
    assert two["data_identifier"] == "nnUNetPlans_2d" and two["symtc_estimated_memory_gib"] <= 24
    assert three["patch_size"] == [16, 256, 256] and three["batch_size"] <= 2
    assert out["configurations"]["3d_cascade_fullres"] == plans["configurations"]["3d_cascade_fullres"]
    assert main(["plan-symtc", "-d", "Dataset905_Fake", "-p", "missing"]) == 1


def test_warmup_cosine_schedule_and_gradient_clip_hook():
    parameter = torch.nn.Parameter(torch.zeros(3))
    optimizer = torch.optim.SGD([parameter], lr=1.0)
    schedule = WarmupCosineLR(optimizer, 1e-3, max_epochs=100, warmup_epochs=4, final_fraction=0.0)
    lrs = []
    for epoch in range(100):
        schedule.step(epoch)
        lrs.append(optimizer.param_groups[0]["lr"])
    assert lrs[:4] == pytest.approx([2e-4, 4e-4, 6e-4, 8e-4]) and lrs[4] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[4:], lrs[5:])) and lrs[-1] < 1e-5
    clip_gradients_before_step(optimizer, [parameter], max_norm=1.0)
    optimizer.param_groups[0]["lr"] = 1.0
    parameter.grad = torch.tensor([30.0, 40.0, 0.0])
    optimizer.step()
    assert torch.allclose(parameter.detach(), torch.tensor([-0.6, -0.8, 0.0]))
    assert deep_supervision_weights(3) == pytest.approx([4 / 7, 2 / 7, 1 / 7])
