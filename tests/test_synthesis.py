"""Contrast-agnostic synthesis: the generation model, its nnU-Net transform, generation label maps
of a converted phantom dataset, and ``nnUNetTrainerSynth_tiny`` taking a training step on them."""
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps
from nnunetv2_symtc.phantom.painting import GENERATION_LABELS
from nnunetv2_symtc.synthesis import SynthesisSettings, synthesize
from nnunetv2_symtc.synthesis.generation_labels import (DATASET_JSON_KEY, attach_generation_labels,
                                                        spineps_generation_files)
from nnunetv2_symtc.synthesis.transform import SynthesisTransform

from conftest import TINY_SUBJECTS
from test_size_adaptive_trainers import one_training_step

FLAT = SynthesisSettings(max_label_std=0.0, max_texture=0.0, blur_sigma_voxels=(0.0, 0.0), max_bias=0.0,
                         max_noise=0.0, gamma_log_std=0.0, inversion_probability=0.0)
"""Every random effect off but the per-label means: the image is piecewise constant."""
SYNTH_DATASET_ID = 902


def _stripes(shape=(3, 40, 30)) -> np.ndarray:
    """Four labels in slabs along the last axis (values 0, 3, 5, 9: not contiguous)."""
    labels = np.zeros(shape, dtype=np.int16)
    for value, start in zip((3, 5, 9), (8, 15, 22)):
        labels[..., start:] = value
    return labels


def test_image_is_z_scored_has_the_label_shape_and_leaves_labels_untouched():
    labels = _stripes()
    before = labels.copy()
    image = synthesize(labels, np.random.default_rng(0))
    assert image.shape == labels.shape and image.dtype == np.float32
    np.testing.assert_array_equal(labels, before)
    assert abs(float(image.mean())) < 1e-4 and abs(float(image.std()) - 1) < 1e-3


def test_same_generator_state_same_image_other_state_other_image():
    labels = _stripes()
    a, b = synthesize(labels, np.random.default_rng(7)), synthesize(labels, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, synthesize(labels, np.random.default_rng(8)))


def test_without_random_effects_each_label_is_one_intensity():
    labels = _stripes()
    image = synthesize(labels, np.random.default_rng(3), FLAT)
    means = []
    for value in np.unique(labels):
        inside = image[labels == value]
        assert np.ptp(inside) < 1e-5, value
        means.append(float(inside[0]))
    assert len(set(np.round(means, 4))) == 4


def test_every_brightness_ordering_occurs():
    """Over seeds, the disc label is darker than bone marrow in some draws and brighter in others
    (T1- and T2-like contrasts), as is CSF against the cord."""
    labels = _stripes()
    disc_brighter = []
    for seed in range(60):
        image = synthesize(labels, np.random.default_rng(seed), FLAT)
        disc_brighter.append(image[labels == 5].mean() > image[labels == 3].mean())
    assert 0.25 < np.mean(disc_brighter) < 0.75


def test_inversion_negates_the_z_scored_image():
    labels = _stripes()
    plain = synthesize(labels, np.random.default_rng(11), SynthesisSettings(inversion_probability=0.0))
    inverted = synthesize(labels, np.random.default_rng(11), SynthesisSettings(inversion_probability=1.0))
    np.testing.assert_allclose(inverted, -plain, atol=1e-4)


def test_blur_spreads_label_boundaries_over_voxels():
    labels = _stripes((1, 20, 30))
    sharp = synthesize(labels, np.random.default_rng(5), FLAT)
    blurred = synthesize(labels, np.random.default_rng(5),
                         SynthesisSettings(**{**FLAT.__dict__, "blur_sigma_voxels": (2.0, 2.0)}))
    row_sharp, row_blurred = sharp[0, 10], blurred[0, 10]
    assert len(np.unique(np.round(row_sharp, 5))) == 4
    assert len(np.unique(np.round(row_blurred, 5))) > 12  # ramps across each boundary


@pytest.mark.parametrize("labels, message", [(np.zeros((4, 4), np.float32), "integer"),
                                             (np.zeros((0, 4), np.int16), "non-empty")])
def test_bad_label_maps_are_refused(labels, message):
    with pytest.raises(ValueError, match=message):
        synthesize(labels, np.random.default_rng(0))


@pytest.mark.parametrize("field, value", [("blur_sigma_voxels", (2.0, 1.0)), ("inversion_probability", 1.5),
                                          ("field_cells", 1), ("max_noise", -0.1)])
def test_bad_settings_are_refused(field, value):
    with pytest.raises(ValueError, match=field):
        SynthesisSettings(**{field: value})


def test_transform_draws_from_the_generation_map_and_keeps_the_target():
    """Channel 1 (generation map) drives the image; channel 0 (target) is what remains; the source
    image does not matter."""
    target = torch.from_numpy(_stripes((1, 40, 30)))
    generation = torch.from_numpy(np.arange(40 * 30, dtype=np.int16).reshape(1, 40, 30) % 7)
    transform = SynthesisTransform(FLAT)
    outputs = []
    for source in (torch.zeros(2, 1, 40, 30), torch.ones(2, 1, 40, 30)):
        np.random.seed(0)
        outputs.append(transform(image=source, segmentation=torch.cat([target, generation])[:, None]))
    zeros, ones = outputs
    torch.testing.assert_close(zeros["image"], ones["image"])
    assert zeros["image"].shape == (2, 1, 40, 30)
    assert not torch.equal(zeros["image"][0], zeros["image"][1])  # each channel its own draw
    torch.testing.assert_close(zeros["segmentation"], target[:, None])
    image = zeros["image"][0, 0].numpy()
    for value in range(7):
        assert np.ptp(image[generation[0].numpy() == value]) < 1e-5
    with pytest.raises(ValueError, match="3 channels"):
        transform(image=torch.zeros(1, 4, 4), segmentation=torch.zeros(3, 4, 4, dtype=torch.int16))


@pytest.fixture(scope="module")
def synth_dataset(tiny_dataset_2d, tmp_path_factory):
    """A copy of the shared tiny dataset (raw and 2d preprocessed, dataset 902) with the phantom's
    generation label maps attached."""
    ds = tiny_dataset_2d
    source = tmp_path_factory.mktemp("phantom_generation")
    write_spineps(source, [(f"{i:02d}", generate_subject(i, PhantomConfig.tiny())) for i in range(TINY_SUBJECTS)],
                  generation_labels=True)
    name = ds.dataset_name.replace(str(ds.dataset_id), str(SYNTH_DATASET_ID))
    raw = Path(os.environ["nnUNet_raw"]) / name
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / name
    shutil.copytree(ds.raw, raw)
    shutil.copytree(ds.preprocessed, preprocessed, ignore=shutil.ignore_patterns("*3d_fullres*", "*_MSFF*", "*ResEnc*"))
    plans = json.loads((preprocessed / f"{ds.plans}.json").read_text())
    plans["dataset_name"] = name
    (preprocessed / f"{ds.plans}.json").write_text(json.dumps(plans, indent=2))
    attach_generation_labels(raw, spineps_generation_files(raw, source))
    return ds.__class__(SYNTH_DATASET_ID, name, "2d"), source


def test_attached_maps_are_declared_and_missing_or_misplaced_maps_are_refused(synth_dataset, tmp_path):
    ds, source = synth_dataset
    dataset_json = json.loads((ds.raw / "dataset.json").read_text())
    folder = ds.raw / dataset_json[DATASET_JSON_KEY]
    assert len(list(folder.iterdir())) == TINY_SUBJECTS
    files = spineps_generation_files(ds.raw, source)
    first = sorted(files)[0]
    with pytest.raises(InputError, match=first):
        attach_generation_labels(ds.raw, {case: path for case, path in files.items() if case != first})
    shifted = sitk.ReadImage(str(files[first]))
    shifted.SetOrigin(tuple(o + 5.0 for o in shifted.GetOrigin()))
    sitk.WriteImage(shifted, str(tmp_path / "shifted.nii.gz"))
    with pytest.raises(InputError, match="not on the grid"):
        attach_generation_labels(ds.raw, {**files, first: tmp_path / "shifted.nii.gz"})


def test_synth_trainer_trains_on_images_drawn_from_the_generation_maps(synth_dataset):
    ds, _ = synth_dataset
    trainer = one_training_step("nnUNetTrainerSynth_tiny", ds, ds.plans)
    pipeline = trainer.dataloader_train.generator.transforms
    assert isinstance(pipeline.transforms[0], SynthesisTransform)
    generation = ds.preprocessed / f"{trainer.configuration_manager.data_identifier}_generation_labels"
    tr_keys, _ = trainer.do_split()
    dataset = trainer.dataset_class(trainer.preprocessed_dataset_folder, tr_keys,
                                    folder_with_segs_from_previous_stage=str(generation))
    n_tissues = len(GENERATION_LABELS)
    for key in tr_keys:
        _, target, maps, _ = dataset.load_case(key)
        assert maps.shape == target.shape[1:]  # stored without a channel axis, as nnU-Net stores a previous stage
        values = set(np.unique(np.asarray(maps)).tolist())
        assert values <= set(range(n_tissues)) and len(values) > 10
        # every bone voxel of the target lies in a bone tissue of the map
        bone = {GENERATION_LABELS[t] for t in ("cortical bone", "vertebral body marrow", "posterior element marrow",
                                               "sacral marrow")}
        body = np.asarray(target)[0] == trainer.dataset_json["labels"]["vertebral_body"]
        assert body.any() and np.isin(np.asarray(maps)[body], list(bone)).mean() > 0.95


def test_realscans_trainer_keeps_a_checkpoint_per_learning_curve_point(synth_dataset):
    from nnunetv2.run.run_training import get_trainer_from_args

    ds, _ = synth_dataset
    trainer = get_trainer_from_args(str(ds.dataset_id), "2d", 0, "nnUNetTrainerSynth_realscans", ds.plans,
                                    device=torch.device("cpu"))
    assert (trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.learning_curve_every) == (50, 40, 10)
    trainer.num_epochs, trainer.num_iterations_per_epoch, trainer.num_val_iterations_per_epoch = 3, 1, 1
    trainer.learning_curve_every = 1
    trainer.run_training()
    fold = Path(trainer.output_folder)
    kept = sorted(p.name for p in fold.glob("checkpoint_epoch_*.pth"))
    assert kept == ["checkpoint_epoch_1.pth", "checkpoint_epoch_2.pth"]  # the last epoch is checkpoint_final
    first, final = (torch.load(fold / n, map_location="cpu", weights_only=False)["network_weights"]
                    for n in ("checkpoint_epoch_1.pth", "checkpoint_final.pth"))
    assert any(not torch.equal(first[k], final[k]) for k in first)  # a checkpoint of that epoch, not the end
