"""SymTC memory-aware plans and training recipes (pure functions; the nnU-Net run is in test_symtc_nnunet)."""
import json

import pytest
import torch

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.networks.from_plans import build_symtc
from nnunetv2_symtc.planning import plan_msff, plan_symtc
from nnunetv2_symtc.planning.symtc import (GIB, RECOMPUTED_TOKEN_TENSORS, build_from_architecture,
                                           estimate_training_memory, fit_configuration, symtc_patch_size)
from nnunetv2_symtc.trainers.recipes import WarmupCosineLR, clip_gradients_before_step, deep_supervision_weights


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


def test_memory_estimate_counts_every_stored_attention_layer_without_recompute():
    """``recompute=False`` keeps the internals of all 7 attention layers (one per SymTC block at
    ``num_layers=(1, 1, 1, 1)``) instead of one recomputed layer's at a time."""
    width = dict(embed_dim=64, num_heads=4, channels=(16, 32, 64), num_layers=(1, 1, 1, 1))
    recomputed = estimate_training_memory((256, 256), (1, 1), 4, 12, {**width, "recompute": True})
    stored = estimate_training_memory((256, 256), (1, 1), 4, 12, {**width, "recompute": False})
    tokens = 256 * 256 // (16 * 16)
    assert stored - recomputed == pytest.approx(4 * RECOMPUTED_TOKEN_TENSORS * 64 * tokens * (7 - 1) * 2.5)


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
    assert two["architecture"]["network_class_name"] == "nnunetv2_symtc.networks.SymTC"
    assert two["architecture"]["arch_kwargs"]["strides"] == [[1, 1], [4, 4], [4, 4], [1, 1]]
    assert two["architecture"]["arch_kwargs"]["embed_dim"] == 512
    arch3 = three["architecture"]
    assert arch3["network_class_name"] == "nnunetv2_symtc.networks.SymTC3D"
    # the 3D geometry is computed once, here, and stored: thick axis 0 is not downsampled at level 1
    assert arch3["arch_kwargs"]["strides"] == [[1, 1, 1], [1, 4, 4], [4, 4, 4], [1, 1, 1]]
    assert arch3["arch_kwargs"]["level_kernels"][0] == [1, 5, 5]
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


def _fake_dataset(tmp_path, name="Dataset906_Fake"):
    folder = tmp_path / name
    folder.mkdir()
    unet = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
            "arch_kwargs": {"n_stages": 3, "features_per_stage": [8, 16, 32], "conv_op": "torch.nn.modules.conv.Conv2d",
                            "kernel_sizes": [[3, 3]] * 3, "strides": [[1, 1], [2, 2], [2, 2]],
                            "n_conv_per_stage": [1, 1, 1], "n_conv_per_stage_decoder": [1, 1], "conv_bias": True,
                            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm2d",
                            "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None,
                            "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}},
            "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
    plans = {"plans_name": "nnUNetPlans", "dataset_name": name, "configurations": {
        "2d": {"data_identifier": "nnUNetPlans_2d", "patch_size": [320, 256], "spacing": [0.5, 0.5], "batch_size": 12,
               "architecture": unet},
        "3d_fullres": {"data_identifier": "nnUNetPlans_3d_fullres", "patch_size": [14, 250, 250],
                       "spacing": [3.3, 0.5, 0.5], "batch_size": 2}}}
    (folder / "nnUNetPlans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps({"labels": {"background": 0, "a": 1, "b": 2, "c": 3},
                                                     "channel_names": {"0": "T2"}}))
    return folder


def test_plan_symtc_api_with_width_numbers_patch_and_batch(tmp_path):
    """The call a CPU-sized demo makes: explicit width numbers, patch and batch, one configuration."""
    folder = _fake_dataset(tmp_path)
    path = plan_symtc(folder, width=dict(embed_dim=64, num_heads=4, channels=(16, 32, 64)), configurations=["2d"],
                      patch_size=(128, 128), batch_size=4)
    plans = json.loads(path.read_text())
    two = plans["configurations"]["2d"]
    assert two["patch_size"] == [128, 128] and two["batch_size"] == 4 and two["data_identifier"] == "nnUNetPlans_2d"
    kwargs = two["architecture"]["arch_kwargs"]
    assert (kwargs["embed_dim"], kwargs["num_heads"], kwargs["channels"], kwargs["num_layers"]) == \
        (64, 4, [16, 32, 64], [2, 2, 2, 2])
    assert "architecture" not in plans["configurations"]["3d_fullres"]        # not planned: copied unchanged
    network = build_from_architecture(two["architecture"], 1, 4, deep_supervision=True)
    outputs = network(torch.randn(1, 1, 128, 128))
    assert [tuple(o.shape[2:]) for o in outputs] == [(128, 128), (32, 32), (8, 8)]
    with pytest.raises(ValueError, match="configuration 2d: .*not divisible"):
        plan_symtc(folder, width="tiny", configurations=["2d"], patch_size=(120, 128))
    with pytest.raises(ValueError, match="no configuration"):
        plan_symtc(folder, width="tiny", configurations=["3d_lowres"])
    with pytest.raises(ValueError, match="unknown keys"):
        plan_symtc(folder, width=dict(embed=64))


def test_plan_symtc_cli_width_numbers(tmp_path, monkeypatch):
    _fake_dataset(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["plan-symtc", "-d", "Dataset906_Fake", "-c", "2d", "--width", "small", "--num-heads", "4",
                 "--patch-size", "64", "64", "--batch-size", "3"]) == 0
    two = json.loads((tmp_path / "Dataset906_Fake" / "nnUNetPlans_SymTC.json").read_text())["configurations"]["2d"]
    assert two["architecture"]["arch_kwargs"]["embed_dim"] == 256 and two["architecture"]["arch_kwargs"]["num_heads"] == 4
    assert two["patch_size"] == [64, 64] and two["batch_size"] == 3


def test_plan_msff_names_the_msff_unet_and_keeps_the_unet(tmp_path, monkeypatch):
    folder = _fake_dataset(tmp_path)
    monkeypatch.setenv("nnUNet_preprocessed", str(tmp_path))
    assert main(["plan-msff", "-d", "Dataset906_Fake", "--dilations", "1", "2", "4"]) == 0
    plans = json.loads((folder / "nnUNetPlans_MSFF.json").read_text())
    source = json.loads((folder / "nnUNetPlans.json").read_text())["configurations"]["2d"]
    two = plans["configurations"]["2d"]
    assert two["architecture"]["network_class_name"] == "nnunetv2_symtc.networks.PlannedMSFFUNet"
    kwargs = two["architecture"]["arch_kwargs"]
    assert kwargs["strides"] == source["architecture"]["arch_kwargs"]["strides"]
    assert kwargs["unet_class_name"] == source["architecture"]["network_class_name"]
    assert kwargs["msff_dilations"] == [1, 2, 4]
    assert two["patch_size"] == source["patch_size"] and two["data_identifier"] == source["data_identifier"]
    with pytest.raises(ValueError, match="already names the MSFF"):
        plan_msff(folder, source_plans="nnUNetPlans_MSFF", target_plans="again")
