"""The size-adaptive / MSFF trainers inside nnU-Net: lookup by name, build, train, validate, predict, continue."""
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiments, preprocess
from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.run.run_training import get_trainer_from_args, maybe_load_checkpoint, run_training
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

from nnunetv2_symtc.losses import DiceAndSizeAdaptiveCELoss, SizeAdaptiveCELoss
from nnunetv2_symtc.networks import MSFFUNet, PlannedMSFFUNet
from nnunetv2_symtc.planning import plan_msff

CPU = torch.device("cpu")
RESENC_PLANS = "nnUNetResEncUNetMPlans"


def inner_loss(loss):
    return loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss


def one_training_step(trainer_name: str, ds, plans: str):
    """Resolve ``trainer_name`` through nnU-Net's lookup, set it up as nnU-Net does and run one
    training step on a real batch. Returns the trainer."""
    trainer_class = recursive_find_trainer_class_by_name(trainer_name)
    assert trainer_class.__module__.startswith("nnunetv2_symtc.trainers")
    trainer = get_trainer_from_args(str(ds.dataset_id), ds.configuration, 0, trainer_name, plans, device=CPU)
    trainer.on_train_start()
    try:
        batch = next(trainer.dataloader_train)
    finally:  # stop the augmentation workers (what on_train_end does, without writing a checkpoint)
        for loader in (trainer.dataloader_train, trainer.dataloader_val):
            if hasattr(loader, "_finish"):
                loader._finish()
    before = {name: p.detach().clone() for name, p in trainer.network.named_parameters()}
    result = trainer.train_step(batch)
    assert np.isfinite(result["loss"])
    parameters = dict(trainer.network.named_parameters())
    changed = {name for name, p in parameters.items() if not torch.equal(before[name], p)}
    assert len(changed) > len(parameters) / 2
    if isinstance(trainer.network, MSFFUNet):  # every MSFF parameter is used; its zero-initialised output learns
        assert all(p.grad is not None for name, p in parameters.items() if name.startswith("msff."))
        assert {"msff.project.0.weight", "msff.project.1.weight"} <= changed
    return trainer


@pytest.mark.parametrize("trainer_name", ["nnUNetTrainerSizeAdaptiveCE", "MSFFUNetTrainer",
                                          "SymTCTrainerSizeAdaptiveCE_tiny"])
def test_trainer_resolves_builds_and_trains_one_step(trainer_name, tiny_dataset_2d):
    trainer = one_training_step(trainer_name, tiny_dataset_2d, tiny_dataset_2d.plans)
    size_adaptive = "SizeAdaptive" in trainer_name
    ce = inner_loss(trainer.loss).ce
    assert isinstance(ce, SizeAdaptiveCELoss) == size_adaptive
    if size_adaptive:
        assert isinstance(inner_loss(trainer.loss), DiceAndSizeAdaptiveCELoss)
        assert ce.ignore_index == trainer.label_manager.ignore_label
    assert isinstance(trainer.network, MSFFUNet) == trainer_name.startswith("MSFF")
    for name in (trainer_name, "SymTCTrainerSizeAdaptiveCE", "MSFFUNetTrainerSizeAdaptiveCE",
                 "nnUNetTrainerSizeAdaptiveCE_tiny", "MSFFUNetTrainer_tiny"):
        assert recursive_find_trainer_class_by_name(name).__name__ == name


@pytest.mark.parametrize("trainer_name", ["nnUNetTrainerSizeAdaptiveCE", "MSFFUNetTrainer"])
def test_msff_plans_name_the_network_for_any_trainer(trainer_name, tiny_dataset_2d):
    """``symtc plan-msff``: the plans name ``PlannedMSFFUNet``; a trainer without MSFF code builds it."""
    plan_msff(tiny_dataset_2d.preprocessed, target_plans="nnUNetPlans_MSFF", configurations=["2d"])
    trainer = one_training_step(trainer_name, tiny_dataset_2d, "nnUNetPlans_MSFF")
    assert isinstance(trainer.network, PlannedMSFFUNet) and trainer.network.decoder.deep_supervision


@pytest.mark.slow
def test_msff_trainer_with_residual_encoder_plans(tiny_dataset_2d):
    """``-p nnUNetResEncUNetMPlans``: the MSFF module sits on ResEnc's bottleneck."""
    ds = tiny_dataset_2d
    if not (ds.preprocessed / f"{RESENC_PLANS}.json").is_file():
        plan_experiments([ds.dataset_id], "nnUNetPlannerResEncM")
    if not (ds.preprocessed / f"{RESENC_PLANS}_2d").is_dir():
        preprocess([ds.dataset_id], RESENC_PLANS, configurations=("2d",), num_processes=(1,), show_progress_bar=False)
    trainer = one_training_step("MSFFUNetTrainerSizeAdaptiveCE", ds, RESENC_PLANS)
    assert type(trainer.network.encoder).__name__ == "ResidualEncoder"
    assert isinstance(inner_loss(trainer.loss).ce, SizeAdaptiveCELoss)


@pytest.mark.slow
def test_full_nnunet_path_train_validate_predict_continue(tiny_dataset_2d, tmp_path):
    ds, name = tiny_dataset_2d, "MSFFUNetTrainerSizeAdaptiveCE_tiny"
    run_training(str(ds.dataset_id), ds.configuration, 0, name, ds.plans, device=CPU)
    model = Path(os.environ["nnUNet_results"]) / ds.dataset_name / f"{name}__{ds.plans}__{ds.configuration}"
    fold = model / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file() and (fold / "validation" / "summary.json").is_file()
    final = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert any(key.startswith("msff.") for key in final["network_weights"])
    assert final["trainer_name"] == name

    # continue (--c): nnU-Net loads the checkpoint, so the finished run is not trained again
    trainer = get_trainer_from_args(str(ds.dataset_id), ds.configuration, 0, name, ds.plans,
                                    continue_training=True, device=CPU)
    maybe_load_checkpoint(trainer, continue_training=True, validation_only=False)
    assert trainer.current_epoch == trainer.num_epochs == 1
    trainer.run_training()
    continued = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    assert all(torch.equal(continued["network_weights"][k], v) for k, v in final["network_weights"].items())

    # predict: the predictor rebuilds the network through the trainer's static builder (DS off)
    predictor = nnUNetPredictor(tile_step_size=0.5, use_mirroring=False, perform_everything_on_device=False,
                                device=CPU, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(model), use_folds=(0,), checkpoint_name="checkpoint_final.pth")
    assert isinstance(predictor.network, MSFFUNet) and not predictor.network.decoder.deep_supervision
    image_file = sorted((ds.raw / "imagesTr").iterdir())[0]
    image, properties = SimpleITKIO().read_images([str(image_file)])
    segmentation = predictor.predict_single_npy_array(image, properties)
    assert segmentation.shape == image.shape[1:]
    num_classes = predictor.label_manager.num_segmentation_heads
    assert segmentation.min() >= 0 and segmentation.max() < num_classes
