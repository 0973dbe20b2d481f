"""SymTC through nnU-Net's own code paths, on the shared tiny phantom dataset (CPU).

Full path set for ``SymTCTrainer`` in 2D and 3D (through the ``_tiny`` CI variant): SymTC plans,
train, ``--c`` continue, ``--val --npz``, prediction (nnUNetPredictor from the results folder, as
``nnUNetv2_predict``), ``find_best_configuration`` and ``-pretrained_weights``; all through the
functions nnU-Net's commands call, in-process to save interpreter start-ups. Every other variant: resolved by name through nnU-Net's lookup, built,
one training step. Fine-tuning from an imported reference checkpoint on a dataset whose class
count is not 12.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from batchgenerators.utilities.file_and_folder_operations import load_json
from nnunetv2.run.run_training import get_trainer_from_args, run_training
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_symtc.cli import main as symtc_main
from nnunetv2_symtc.networks import SymTC, SymTC3D

from reference_symtc import random_reference_state_dict, reference_layout

PLANS = "nnUNetPlans_SymTC"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def symtc_plans(tiny_dataset):
    """``symtc plan-symtc`` on the shared dataset (both configurations)."""
    assert symtc_main(["plan-symtc", "-d", str(tiny_dataset.dataset_id), "-gpu_memory_target", "8"]) == 0
    plans = load_json(tiny_dataset.preprocessed / f"{PLANS}.json")
    source = load_json(tiny_dataset.preprocessed / "nnUNetPlans.json")
    for name in ("2d", "3d_fullres"):
        ours, theirs = plans["configurations"][name], source["configurations"][name]
        assert ours["data_identifier"] == theirs["data_identifier"]           # preprocessed data reused
        assert ours["batch_size"] >= 1 and ours["symtc_estimated_memory_gib"] <= 8
        assert all(p % 16 == 0 for p in ours["patch_size"][-2:])              # in-plane total stride 16
    return plans


def results_folder(trainer: str, configuration: str, dataset) -> Path:
    return Path(os.environ["nnUNet_results"]) / dataset.dataset_name / f"{trainer}__{PLANS}__{configuration}"


def run_nnunet_paths(dataset, configuration: str, tmp_path: Path) -> None:
    trainer = "SymTCTrainer_tiny"
    run_training(str(dataset.dataset_id), configuration, 0, trainer, PLANS, export_validation_probabilities=True,
                 device=CPU)
    fold0 = results_folder(trainer, configuration, dataset) / "fold_0"
    assert (fold0 / "checkpoint_final.pth").is_file()
    checkpoint = torch.load(fold0 / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert checkpoint["trainer_name"] == trainer
    embed = checkpoint["network_weights"]["encoder.T0a.attention.embed.weight"]
    assert embed.dim() == (4 if configuration == "2d" else 5)   # SymTC (Conv2d) or SymTC3D (Conv3d)

    # --c: continue from the final checkpoint (strict load into a freshly built network).
    run_training(str(dataset.dataset_id), configuration, 0, trainer, PLANS, continue_training=True, device=CPU)
    # --val --npz: validation only, with probabilities for find_best_configuration.
    for npz in (fold0 / "validation").glob("*.npz"):
        npz.unlink()
    run_training(str(dataset.dataset_id), configuration, 0, trainer, PLANS, only_run_validation=True,
                 export_validation_probabilities=True, device=CPU)
    assert list((fold0 / "validation").glob("*.npz"))
    assert "foreground_mean" in load_json(fold0 / "validation" / "summary.json")

    # Prediction as nnUNetv2_predict does it: trainer resolved by name, network built with DS off,
    # checkpoint loaded strictly.
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    predictor = nnUNetPredictor(device=CPU, perform_everything_on_device=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(fold0.parent), use_folds=(0,))
    case = sorted((dataset.raw / "imagesTr").iterdir())[0]
    ending = load_json(dataset.raw / "dataset.json")["file_ending"]
    output = tmp_path / f"predicted{ending}"
    predictor.predict_from_files_sequential([[str(case)]], [str(output)[:-len(ending)]])
    reader = predictor.plans_manager.image_reader_writer_class()
    image, _ = reader.read_images([str(case)])
    segmentation, _ = reader.read_seg(str(output))
    assert segmentation.shape[1:] == image.shape[1:]
    assert set(np.unique(segmentation)) <= set(load_json(dataset.raw / "dataset.json")["labels"].values())

    # find_best_configuration on fold 0.
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration
    find_best_configuration(dataset.dataset_id, [dict(plans=PLANS, configuration=configuration, trainer=trainer)],
                            allow_ensembling=False, num_processes=1, folds=(0,))
    inference = Path(os.environ["nnUNet_results"]) / dataset.dataset_name / "inference_information.json"
    assert inference.is_file()
    assert json.loads(inference.read_text())["best_model_or_ensemble"]["selected_model_or_models"][0]["trainer"] == trainer

    # -pretrained_weights: fold 1 starts from fold 0's weights.
    run_training(str(dataset.dataset_id), configuration, 1, trainer, PLANS, pretrained_weights=str(fold0 / "checkpoint_final.pth"),
                 device=CPU)
    assert (fold0.parent / "fold_1" / "checkpoint_final.pth").is_file()


@pytest.mark.slow
def test_symtc_trainer_2d_full_nnunet_paths(tiny_dataset_2d, symtc_plans, tmp_path):
    run_nnunet_paths(tiny_dataset_2d, "2d", tmp_path)


@pytest.mark.slow
def test_symtc_trainer_3d_full_nnunet_paths(tiny_dataset_3d, symtc_plans, tmp_path):
    run_nnunet_paths(tiny_dataset_3d, "3d_fullres", tmp_path)


def one_training_step(trainer_name: str, dataset, configuration: str):
    """Resolve through nnU-Net's lookup (as nnUNetv2_train does), initialise, run one ``train_step``."""
    trainer = get_trainer_from_args(str(dataset.dataset_id), configuration, 0, trainer_name, PLANS, device=CPU)
    assert type(trainer) is recursive_find_trainer_class_by_name(trainer_name)
    trainer.initialize()
    trainer.print_to_log_file = lambda *a, **k: None
    trainer.dataloader_train, trainer.dataloader_val = trainer.get_dataloaders()
    trainer.on_train_epoch_start()
    before = {k: v.detach().clone() for k, v in trainer.network.state_dict().items()}
    loss = trainer.train_step(next(trainer.dataloader_train))["loss"]
    assert np.isfinite(loss)
    changed = [k for k, v in trainer.network.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    return trainer


@pytest.mark.slow
@pytest.mark.parametrize("trainer_name", ["SymTCTrainer", "SymTCTrainer_small", "SymTCTrainer_paper",
                                          "SymTCTrainerDS", "SymTCTrainer_50epochs", "SymTCTrainer_small_tiny",
                                          "SymTCTrainerDS_tiny"])
def test_variant_resolves_builds_and_trains_one_step(trainer_name, tiny_dataset_2d, symtc_plans):
    trainer = one_training_step(trainer_name, tiny_dataset_2d, "2d")
    network = trainer.network
    assert isinstance(network, SymTC)
    assert trainer.inference_allowed_mirroring_axes is None        # 2D sagittal: no mirroring
    if "DS" in trainer_name:
        assert len(network.decoder.seg_layers) == 3 and network.decoder.deep_supervision
        assert trainer._get_deep_supervision_scales() == [[1.0, 1.0], [0.25, 0.25], [0.0625, 0.0625]]
        assert min(trainer.loss.weight_factors) > 0
    if trainer_name == "SymTCTrainer_paper":
        assert isinstance(trainer.optimizer, torch.optim.Adam) and trainer.optimizer.param_groups[0]["lr"] == 1e-4
        assert trainer.loss.weight_ce == trainer.loss.weight_dice == 0.5
        assert trainer.loss.ce.reduction == "symtc_sum"


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
    a dataset whose class count is not 12."""
    num_classes = len(load_json(tiny_dataset_2d.preprocessed / "dataset.json")["labels"])
    assert num_classes != 12
    layout = reference_layout(1, 12, 512, 16, (2, 2, 2, 2))
    torch.save({"model_state_dict": random_reference_state_dict(layout, seed=3)}, tmp_path / "best.pth")
    with pytest.warns(UserWarning, match="trust"):
        assert symtc_main(["import-checkpoint", "--reference", str(tmp_path / "best.pth"),
                           "-o", str(tmp_path / "imported.pth")]) == 0
    (tmp_path / "best.pth").unlink()
    run_training(str(tiny_dataset_2d.dataset_id), "2d", 0, "SymTCTrainer_paper_tiny", PLANS,
                 pretrained_weights=str(tmp_path / "imported.pth"), device=CPU)
    fold0 = results_folder("SymTCTrainer_paper_tiny", "2d", tiny_dataset_2d) / "fold_0"
    weights = torch.load(fold0 / "checkpoint_final.pth", map_location="cpu", weights_only=False)["network_weights"]
    assert weights["decoder.seg_layers.0.weight"].shape[0] == num_classes
    imported = torch.load(tmp_path / "imported.pth", weights_only=True)["network_weights"]
    # Started from the imported weights: after two Adam steps at lr 1e-4 every weight is within 1e-3.
    key = "encoder.T2a.attention.layers.0.attention.query_content.0.weight"
    assert (weights[key] - imported[key]).abs().max() < 1e-3
