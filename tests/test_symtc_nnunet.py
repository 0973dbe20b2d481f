"""SymTC through nnU-Net's own code paths, on the shared tiny phantom dataset (CPU).

Plans own the network: with tiny-width SymTC plans (``symtc plan-symtc --width tiny``), nnU-Net's
own ``nnUNetTrainer_1epoch`` (no plugin code; in 3D our ``nnUNetTrainerSizeAdaptiveCE_tiny``, no
SymTC code, for time) runs the full path through nnU-Net's console scripts: ``nnUNetv2_train --npz``, ``nnUNetv2_predict``,
``nnUNetv2_find_best_configuration``. Every SymTC trainer variant, ``nnUNetTrainerSizeAdaptiveCE``
and nnU-Net's ``nnUNetTrainer``: resolved by name, built from the plans, one training step in
which every parameter gets a gradient. Fine-tuning from an imported reference checkpoint on a
dataset whose class count is not 12 (paper-width SymTC plans).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.run.run_training import get_trainer_from_args, run_training
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_symtc.cli import main as symtc_main
from nnunetv2_symtc.networks import SymTC, SymTC3D
from nnunetv2_symtc.planning import plan_symtc

from reference_symtc import random_reference_state_dict, reference_layout

PLANS = "nnUNetPlans_SymTC"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def symtc_plans(tiny_dataset):
    """``symtc plan-symtc --width tiny --batch-size 1`` on the shared dataset (both configurations;
    batch 1 keeps the training paths short on a CPU)."""
    assert symtc_main(["plan-symtc", "-d", str(tiny_dataset.dataset_id), "-gpu_memory_target", "8",
                       "--width", "tiny", "--batch-size", "1"]) == 0
    plans = load_json(tiny_dataset.preprocessed / f"{PLANS}.json")
    source = load_json(tiny_dataset.preprocessed / "nnUNetPlans.json")
    for name in ("2d", "3d_fullres"):
        ours, theirs = plans["configurations"][name], source["configurations"][name]
        assert ours["data_identifier"] == theirs["data_identifier"]           # preprocessed data reused
        assert ours["batch_size"] == 1 and ours["symtc_estimated_memory_gib"] <= 8
        assert all(p % 16 == 0 for p in ours["patch_size"][-2:])              # in-plane total stride 16
        assert ours["architecture"]["arch_kwargs"]["embed_dim"] == 32          # tiny width
    return plans


def nnunet_command(*args: str) -> None:
    """Run one of nnU-Net's console scripts from this environment (1 process, no compile)."""
    env = dict(os.environ, nnUNet_def_n_proc="1", nnUNet_n_proc_DA="1", nnUNet_compile="f")
    result = subprocess.run([str(Path(sys.executable).parent / args[0]), *args[1:]], env=env, capture_output=True,
                            text=True)
    assert result.returncode == 0, f"{' '.join(args)}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"


def run_nnunet_paths_with_nnunet_trainer(dataset, configuration: str, tmp_path: Path, trainer: str) -> None:
    """``trainer`` has no SymTC code: the network comes from the plans alone."""
    dataset_id = str(dataset.dataset_id)
    nnunet_command("nnUNetv2_train", dataset_id, configuration, "0", "-tr", trainer, "-p", PLANS, "--npz",
                   "-device", "cpu")
    fold0 = Path(os.environ["nnUNet_results"]) / dataset.dataset_name / f"{trainer}__{PLANS}__{configuration}" / "fold_0"
    checkpoint = torch.load(fold0 / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert "decoder.seg_layers.2.weight" in checkpoint["network_weights"]     # DS heads, trained with DS
    embed = checkpoint["network_weights"]["encoder.T0a.attention.embed.weight"]
    assert embed.dim() == (4 if configuration == "2d" else 5)   # SymTC (Conv2d) or SymTC3D (Conv3d)
    assert list((fold0 / "validation").glob("*.npz"))

    inputs, outputs = tmp_path / "in", tmp_path / "out"
    inputs.mkdir()
    case = sorted((dataset.raw / "imagesTr").iterdir())[0]
    shutil.copy(case, inputs / case.name)
    nnunet_command("nnUNetv2_predict", "-i", str(inputs), "-o", str(outputs), "-d", dataset_id, "-c", configuration,
                   "-f", "0", "-tr", trainer, "-p", PLANS, "-device", "cpu", "-npp", "1", "-nps", "1")
    ending = load_json(dataset.raw / "dataset.json")["file_ending"]
    predicted = outputs / (case.name[:-len(f"_0000{ending}")] + ending)
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
    segmentation, _ = SimpleITKIO().read_seg(str(predicted))
    image, _ = SimpleITKIO().read_images([str(case)])
    assert segmentation.shape[1:] == image.shape[1:]

    nnunet_command("nnUNetv2_find_best_configuration", dataset_id, "-c", configuration, "-tr", trainer, "-p", PLANS,
                   "-f", "0", "-np", "1", "--disable_ensembling")
    inference = Path(os.environ["nnUNet_results"]) / dataset.dataset_name / "inference_information.json"
    assert json.loads(inference.read_text())["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == trainer


@pytest.mark.slow
def test_nnunet_trainer_2d_full_paths_with_symtc_plans(tiny_dataset_2d, symtc_plans, tmp_path):
    run_nnunet_paths_with_nnunet_trainer(tiny_dataset_2d, "2d", tmp_path, "nnUNetTrainer_1epoch")


@pytest.mark.slow
def test_nnunet_trainer_3d_full_paths_with_symtc_plans(tiny_dataset_3d, symtc_plans, tmp_path):
    """Our U-Net trainer at the test budget (nnUNetTrainer_1epoch's 300 3D iterations took 10 min)."""
    run_nnunet_paths_with_nnunet_trainer(tiny_dataset_3d, "3d_fullres", tmp_path, "nnUNetTrainerSizeAdaptiveCE_tiny")


def one_training_step(trainer_name: str, dataset, configuration: str, plans: str = PLANS):
    """Resolve through nnU-Net's lookup (as nnUNetv2_train does), initialise, run one ``train_step``;
    every parameter must get a gradient (DDP without find_unused_parameters)."""
    trainer = get_trainer_from_args(str(dataset.dataset_id), configuration, 0, trainer_name, plans, device=CPU)
    assert type(trainer) is recursive_find_trainer_class_by_name(trainer_name)
    trainer.initialize()
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.on_train_epoch_start()
    before = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
    def record_parameters_without_gradient(optimizer, args, kwargs) -> None:
        trainer.no_grad = [n for n, p in trainer.network.named_parameters() if p.grad is None]

    trainer.optimizer.register_step_pre_hook(record_parameters_without_gradient)
    loss = trainer.train_step(next(trainer.dataloader_train))["loss"]
    assert np.isfinite(loss)
    assert trainer.no_grad == []
    changed = [k for k, v in trainer.network.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    return trainer


@pytest.mark.parametrize("trainer_name", ["SymTCTrainer", "SymTCTrainer_small", "SymTCTrainer_paper",
                                          "SymTCTrainerDS", "SymTCTrainer_50epochs", "SymTCTrainer_small_tiny",
                                          "SymTCTrainerDS_tiny", "SymTCTrainerSizeAdaptiveCE",
                                          "nnUNetTrainerSizeAdaptiveCE", "nnUNetTrainer"])
def test_trainer_builds_symtc_from_the_plans_and_trains_one_step(trainer_name, tiny_dataset_2d, symtc_plans):
    """Whatever the trainer (and its width suffix), the network is the plans' tiny SymTC, trained with DS."""
    trainer = one_training_step(trainer_name, tiny_dataset_2d, "2d")
    network = trainer.network
    assert isinstance(network, SymTC) and network.embed_dim == 32
    if trainer_name != "nnUNetTrainer":  # nnU-Net's own trainer mirrors as nnU-Net does; ours never in 2D sagittal
        assert trainer.inference_allowed_mirroring_axes is None
    assert len(network.decoder.seg_layers) == 3 and network.decoder.deep_supervision
    assert trainer._get_deep_supervision_scales() == [[1.0, 1.0], [0.25, 0.25], [0.0625, 0.0625]]
    if trainer_name.startswith("SymTC"):
        assert min(trainer.loss.weight_factors) > 0
    if trainer_name == "SymTCTrainer_paper":
        assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.optimizer.param_groups[0]["lr"] == 1e-4
        loss = trainer.loss.loss  # inside nnU-Net's DeepSupervisionWrapper
        assert loss.weight_ce == loss.weight_dice == 0.5
        assert loss.ce.reduction == "symtc_sum"


@pytest.mark.slow
def test_3d_mirroring_respects_left_right_pairs(tiny_dataset_3d, symtc_plans):
    trainer = one_training_step("SymTCTrainer_tiny", tiny_dataset_3d, "3d_fullres")
    assert isinstance(trainer.network, SymTC3D)
    dataset_json = load_json(tiny_dataset_3d.preprocessed / "dataset.json")
    axes = dataset_json["symtc_axes"]
    allowed = set(trainer.inference_allowed_mirroring_axes or ())
    assert axes["superior_inferior"] not in allowed
    from nnunetv2_symtc.augmentation.mirroring import has_left_right_pairs
    assert (axes["left_right"] in allowed) == (not has_left_right_pairs(dataset_json["labels"]))


@pytest.mark.slow
def test_fine_tune_from_imported_reference_checkpoint(tiny_dataset_2d, symtc_plans, tmp_path):
    """symtc import-checkpoint (paper layout) -> nnU-Net -pretrained_weights with SymTCTrainer_paper on
    paper-width SymTC plans, on a dataset whose class count is not 12."""
    num_classes = len(load_json(tiny_dataset_2d.preprocessed / "dataset.json")["labels"])
    assert num_classes != 12
    layout = reference_layout(1, 12, 512, 16, (2, 2, 2, 2))
    torch.save({"model_state_dict": random_reference_state_dict(layout, seed=3)}, tmp_path / "best.pth")
    with pytest.warns(UserWarning, match="trust"):
        assert symtc_main(["import-checkpoint", "--reference", str(tmp_path / "best.pth"),
                           "-o", str(tmp_path / "imported.pth")]) == 0
    (tmp_path / "best.pth").unlink()
    plan_symtc(tiny_dataset_2d.preprocessed, target_plans="nnUNetPlans_SymTCpaper", width="paper",
               configurations=["2d"], patch_size=(64, 64), batch_size=2)
    run_training(str(tiny_dataset_2d.dataset_id), "2d", 0, "SymTCTrainer_paper_tiny", "nnUNetPlans_SymTCpaper",
                 pretrained_weights=str(tmp_path / "imported.pth"), device=CPU)
    fold0 = (Path(os.environ["nnUNet_results"]) / tiny_dataset_2d.dataset_name
             / "SymTCTrainer_paper_tiny__nnUNetPlans_SymTCpaper__2d" / "fold_0")
    weights = torch.load(fold0 / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert weights["decoder.seg_layers.0.weight"].shape[0] == num_classes
    imported = torch.load(tmp_path / "imported.pth", weights_only=True)["network_weights"]
    # Started from the imported weights: after two Adam steps at lr 1e-4 every weight is within 1e-3.
    key = "encoder.T2a.attention.layers.0.attention.query_content.0.weight"
    assert (weights[key] - imported[key]).abs().max() < 1e-3
