"""Anatomy-safe mirroring and rotation in the axes of the patches nnU-Net actually feeds.

The end-to-end tests preprocess tiny phantoms with nnU-Net, build our real trainers and check the
mirror axes and rotations they return against the physical direction of each patch axis, read
from the raw image's geometry here (not through the package's resolver).
"""
import json
import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_symtc.augmentation.axes import (ANTERIOR_POSTERIOR, LEFT_RIGHT, SUPERIOR_INFERIOR, PatchAxes,
                                              axes_from_direction, raw_anatomical_axes)
from nnunetv2_symtc.augmentation.mirroring import MAX_ROTATION, anatomy_safe_rules, has_left_right_pairs

LR, SI, AP = LEFT_RIGHT, SUPERIOR_INFERIOR, ANTERIOR_POSTERIOR
PIR = {LR: 0, SI: 1, AP: 2}
PIR_DIRECTION = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)   # ITK x -> P, y -> I, z -> R


# ----------------------------------------------------------------------------- pure resolver and rules

def test_patch_axes_follow_transpose_and_2d_slicing():
    sagittal = PatchAxes.resolve(PIR, [0, 1, 2], 2)
    assert sagittal.names == (SI, AP) and sagittal.plane == "sagittal"
    axial_3d = PatchAxes.resolve(PIR, [1, 0, 2], 3)
    assert axial_3d.names == (SI, LR, AP) and axial_3d.slice_axis is None
    axial_2d = PatchAxes.resolve(PIR, [1, 0, 2], 2)
    assert axial_2d.names == (LR, AP) and axial_2d.plane == "axial" and axial_2d.axis(SI) is None
    lps = {SI: 0, AP: 1, LR: 2}
    assert PatchAxes.resolve(lps, [2, 0, 1], 3).names == (LR, SI, AP)
    with pytest.raises(ValueError, match="permutation"):
        PatchAxes.resolve(PIR, [0, 0, 1], 3)


def test_axes_from_direction_cosines():
    assert axes_from_direction(PIR_DIRECTION) == PIR
    assert axes_from_direction(np.eye(3).ravel()) == {LR: 2, AP: 1, SI: 0}     # LPS: array (S, P, L)
    c = math.cos(math.radians(20))
    s = math.sin(math.radians(20))
    tilted = np.array([[1, 0, 0], [0, c, -s], [0, s, c]]).ravel()                # 20 deg oblique: still named
    assert axes_from_direction(tilted) == {LR: 2, AP: 1, SI: 0}
    c45 = math.cos(math.radians(45))
    oblique = np.array([[1, 0, 0], [0, c45, -c45], [0, c45, c45]]).ravel()
    assert axes_from_direction(oblique) is None
    assert axes_from_direction((1.0, 0.0, 0.0, 1.0)) is None                     # a 2D image


def test_rules_per_plane():
    axial_2d = PatchAxes.resolve(PIR, [1, 0, 2], 2)
    free = anatomy_safe_rules(axial_2d, 2, False, left_right_safe=True)
    assert free.mirror_axes == (0,) and free.max_rotation is None                # half-turn = LR+AP: label-safe
    paired = anatomy_safe_rules(axial_2d, 2, False, left_right_safe=False)
    assert paired.mirror_axes == () and paired.max_rotation == MAX_ROTATION      # half-turn swaps left/right
    sagittal = anatomy_safe_rules(PatchAxes.resolve(PIR, [0, 1, 2], 2), 2, False, left_right_safe=True)
    assert sagittal.mirror_axes == () and sagittal.max_rotation == MAX_ROTATION
    axial_3d = PatchAxes.resolve(PIR, [1, 0, 2], 3)
    dummy = anatomy_safe_rules(axial_3d, 3, True, left_right_safe=True)
    assert dummy.mirror_axes == (1, 2) and dummy.max_rotation is None
    assert anatomy_safe_rules(axial_3d, 3, False, left_right_safe=True).max_rotation == MAX_ROTATION
    unknown = anatomy_safe_rules(None, 3, False, left_right_safe=True)
    assert unknown.mirror_axes == () and unknown.max_rotation == MAX_ROTATION


def test_left_right_pairs_by_name():
    assert has_left_right_pairs(["background", "costal_process_left"])
    assert has_left_right_pairs(["background", "Left Kidney"]) and has_left_right_pairs(["rightLung"])
    assert not has_left_right_pairs(["background", "L1", "disc_L1_L2", "bright_spot", "spinal_canal"])


def _write_image(path: Path, direction) -> None:
    image = sitk.Image(4, 5, 6, sitk.sitkFloat32)
    image.SetDirection(tuple(float(d) for d in direction))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))


def test_raw_axes_sources_in_order(tmp_path):
    raw, preprocessed = tmp_path / "raw", tmp_path / "pre"
    preprocessed.mkdir()
    dataset_json = {"labels": {"background": 0, "spine": 1}, "file_ending": ".nii.gz"}
    nothing = raw_anatomical_axes(dataset_json, preprocessed, raw)
    assert nothing.axes is None and "no preprocessed case" in nothing.source and "no training image" in nothing.source
    _write_image(raw / "imagesTr" / "a_0000.nii.gz", PIR_DIRECTION)
    from_image = raw_anatomical_axes(dataset_json, preprocessed, raw)
    assert from_image.axes == PIR and "a_0000.nii.gz" in from_image.source
    with open(preprocessed / "a.pkl", "wb") as f:
        pickle.dump({"sitk_stuff": {"direction": tuple(np.eye(3).ravel())}}, f)
    from_case = raw_anatomical_axes(dataset_json, preprocessed, raw)             # the arrays nnU-Net trains on win
    assert from_case.axes == {LR: 2, AP: 1, SI: 0} and "a.pkl" in from_case.source
    with pytest.raises(ValueError, match="contradicts"):
        raw_anatomical_axes({**dataset_json, "symtc_axes": PIR}, preprocessed, raw)
    other_reader = {**dataset_json, "overwrite_image_reader_writer": "NibabelIOWithReorient"}
    (preprocessed / "a.pkl").unlink()
    assert raw_anatomical_axes(other_reader, preprocessed, raw).axes is None


# ----------------------------------------------------------------------------- real nnU-Net preprocessing

def anatomy_of_patch_axes(raw_image: Path, transpose_forward, patch_dim: int):
    """Anatomical axis of each patch axis, from the physical step of one voxel along each raw array axis."""
    image = sitk.ReadImage(str(raw_image))
    origin = np.array(image.TransformIndexToPhysicalPoint((0, 0, 0)))
    names = []
    for raw_axis in transpose_forward:                  # raw array axis (z, y, x) = ITK index 2 - axis
        index = [0, 0, 0]
        index[2 - raw_axis] = 1
        step = np.abs(np.array(image.TransformIndexToPhysicalPoint(index)) - origin)
        names.append({0: LR, 1: AP, 2: SI}[int(step.argmax())])   # LPS world x, y, z
    return tuple(names[1:]) if patch_dim == 2 else tuple(names)


def plan_and_preprocess(dataset_ids, preprocess_3d: bool = True) -> None:
    """nnU-Net fingerprint and plans for ``dataset_ids``, and (``preprocess_3d``) ``3d_fullres``
    preprocessing; 2D trainers then find no preprocessed case and use the other axis sources."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess
    extract_fingerprints(list(dataset_ids), num_processes=1, check_dataset_integrity=False, show_progress_bar=False)
    plan_experiments(list(dataset_ids))
    if preprocess_3d:
        preprocess(list(dataset_ids), configurations=("3d_fullres",), num_processes=(1,), show_progress_bar=False)


def configured(trainer_name: str, raw_folder: Path, configuration: str):
    """Build trainer ``trainer_name`` as ``nnUNetv2_train`` does and configure its augmentation.
    Returns (trainer, rotation range, dummy 2D, mirror axes, anatomy of each patch axis)."""
    from nnunetv2.run.run_training import get_trainer_from_args
    trainer = get_trainer_from_args(raw_folder.name, configuration, 0, trainer_name, device=torch.device("cpu"))
    rotation, dummy_2d, _, mirror_axes = trainer.configure_rotation_dummyDA_mirroring_and_inital_patch_size()
    first_image = sorted((raw_folder / "imagesTr").iterdir())[0]
    dim = len(trainer.configuration_manager.patch_size)
    names = anatomy_of_patch_axes(first_image, trainer.plans_manager.transpose_forward, dim)
    return trainer, rotation, dummy_2d, mirror_axes, names


def assert_label_safe(trainer, rotation, dummy_2d, mirror_axes, names, paired: bool):
    """No superior-inferior mirror, no left-right mirror with paired labels, and no rotation that
    can reach a half-turn in a plane where the half-turn swaps labels. Returns the mirrored anatomy."""
    mirrored = {names[a] for a in mirror_axes}
    assert SI not in mirrored, f"mirrors superior-inferior: axes {mirror_axes} are {names}"
    if paired:
        assert LR not in mirrored, f"mirrors left-right with paired labels: axes {mirror_axes} are {names}"
    planes = [(0, 1)] if len(names) == 2 else ([(1, 2)] if dummy_2d else [(0, 1), (0, 2), (1, 2)])
    for a, b in planes:
        if SI in (names[a], names[b]) or paired:
            assert rotation[1] <= math.radians(15) + 1e-9, f"rotates +-{math.degrees(rotation[1])} deg in {names}"
    assert set(trainer.inference_allowed_mirroring_axes or ()) == set(mirror_axes)
    return mirrored


def _log_text(trainer) -> str:
    return Path(trainer.log_file).read_text()


def _reorient_tree(root: Path, orientation: str) -> None:
    for path in root.rglob("*.nii.gz"):
        sitk.WriteImage(sitk.DICOMOrient(sitk.ReadImage(str(path)), orientation), str(path), True)


def _spider(source: Path, dataset_id: int, name: str, config) -> Path:
    from nnunetv2_symtc.dataset_conversion.spider import convert_spider
    from nnunetv2_symtc.phantom import generate_subject, write_spider
    write_spider(source, [(i, generate_subject(i, config)) for i in range(2)])
    return Path(convert_spider(source, dataset_id, name, sequences=("t2",)))


def _lps_spineps(source: Path, dataset_id: int) -> Path:
    """SPINEPS data (paired labels) kept in LPS voxel order: arrays (S, P, L), thick sagittal slices."""
    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps
    write_spineps(source, [(f"{i:02d}", generate_subject(i, PhantomConfig.tiny())) for i in range(2)])
    _reorient_tree(source, "LPS")
    return Path(convert_spineps(source, dataset_id, "LpsSpine", keep_orientation=True))


def _plain_nnunet(raw: Path, dataset_id: int, config) -> Path:
    """A dataset as other converters write it: no symtc_* key, RAS voxel order, bone/disc labels."""
    from nnunetv2_symtc.io import to_sitk
    from nnunetv2_symtc.phantom import generate_subject
    folder = raw / f"Dataset{dataset_id}_PlainSpine"
    for i in range(2):
        subject = generate_subject(10 + i, config)
        classes = np.zeros(subject.spine_mask.shape, np.uint8)
        classes[(subject.spine_mask >= 41) & (subject.spine_mask <= 50)] = 1
        classes[subject.spine_mask == 100] = 2
        for array, path in ((subject.images["t2"].astype(np.float32), folder / "imagesTr" / f"spine_{i:03d}_0000.nii.gz"),
                            (classes, folder / "labelsTr" / f"spine_{i:03d}.nii.gz")):
            path.parent.mkdir(parents=True, exist_ok=True)
            sitk.WriteImage(sitk.DICOMOrient(to_sitk(array, subject.geometry), "RAS"), str(path), True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": {"background": 0, "bone": 1, "disc": 2},
        "numTraining": 2, "file_ending": ".nii.gz"}))
    return folder


@pytest.fixture(scope="module")
def preprocessed(nnunet_dirs, tmp_path_factory):
    """Four tiny phantom datasets, planned by nnU-Net (``3d_fullres`` preprocessed):

    - ``axial``: SPIDER labels (levels, no left/right pairs), superior-inferior coarsest, so nnU-Net
      transposes it to (SI, LR, AP) and cuts 2D slices axially;
    - ``near_isotropic``: the same with superior-inferior only marginally coarsest (2.05 vs 2.0 mm);
    - ``lps``: SPINEPS labels (paired) in LPS voxel order, thick sagittal slices;
    - ``plain``: nnU-Net conventions, no ``symtc_*`` key, RAS voxel order, axial spacing.
    """
    from nnunetv2_symtc.phantom import PhantomConfig
    axial = PhantomConfig.tiny(spacing_zyx=(3.0, 4.5, 3.0), sequences=("t2",))
    near_isotropic = PhantomConfig.tiny(spacing_zyx=(2.0, 2.05, 2.0), n_slices=8, fov_ap_mm=150.0, cut_vertebra=22,
                                        sequences=("t2",))
    folders = {"axial": _spider(tmp_path_factory.mktemp("axial"), 961, "AxialSpider", axial),
               "near_isotropic": _spider(tmp_path_factory.mktemp("near_iso"), 962, "NearIsoSpider", near_isotropic),
               "lps": _lps_spineps(tmp_path_factory.mktemp("lps"), 963),
               "plain": _plain_nnunet(Path(nnunet_dirs["nnUNet_raw"]), 964, axial)}
    plan_and_preprocess([961, 962, 963, 964])
    return folders


@pytest.mark.slow
@pytest.mark.parametrize("name", ["axial", "near_isotropic"])
def test_superior_inferior_coarsest_is_transposed_and_never_mirrored(name, preprocessed):
    folder = preprocessed[name]
    labels = json.loads((folder / "dataset.json").read_text())["labels"]
    assert not has_left_right_pairs(labels)
    for configuration, expected in (("3d_fullres", {LR, AP}), ("2d", {LR})):
        trainer, rotation, dummy_2d, mirror_axes, names = configured("nnUNetTrainerSizeAdaptiveCE", folder, configuration)
        assert names[0] == SI if configuration == "3d_fullres" else SI not in names      # nnU-Net transposed
        assert assert_label_safe(trainer, rotation, dummy_2d, mirror_axes, names, paired=False) == expected
        assert "dataset.json symtc_axes" in _log_text(trainer)
    # Phase-2 style trainer: left-right never (paired input channels), so the axial half-turn is limited too.
    trainer, rotation, dummy_2d, mirror_axes, names = configured("SpinepsInstanceTrainer", folder, "2d")
    assert assert_label_safe(trainer, rotation, dummy_2d, mirror_axes, names, paired=True) == set()


@pytest.mark.slow
def test_non_pir_raw_arrays(preprocessed):
    """LPS arrays with thick sagittal slices: nnU-Net transposes left-right first; 2D slices are
    sagittal; paired labels forbid left-right mirroring."""
    folder = preprocessed["lps"]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["symtc_axes"] == {LR: 2, SI: 0, AP: 1} and has_left_right_pairs(dataset_json["labels"])
    for configuration, expected in (("3d_fullres", {AP}), ("2d", set())):
        trainer, rotation, dummy_2d, mirror_axes, names = configured("nnUNetTrainerSizeAdaptiveCE", folder, configuration)
        assert names[0] == LR if configuration == "3d_fullres" else names == (SI, AP)
        assert assert_label_safe(trainer, rotation, dummy_2d, mirror_axes, names, paired=True) == expected


@pytest.mark.slow
def test_dataset_without_symtc_keys_gets_axes_from_directions(preprocessed):
    """No symtc_* key: the axes come from the direction nnU-Net stored for a preprocessed case (3D),
    or from the first raw image's header (2D, not preprocessed here); the source is logged."""
    folder = preprocessed["plain"]
    for configuration, expected, source in (("3d_fullres", {LR, AP}, ".pkl"), ("2d", {LR}, "imagesTr")):
        trainer, rotation, dummy_2d, mirror_axes, names = configured("nnUNetTrainerSizeAdaptiveCE", folder, configuration)
        assert SI in names if configuration == "3d_fullres" else SI not in names
        assert assert_label_safe(trainer, rotation, dummy_2d, mirror_axes, names, paired=False) == expected
        assert source in _log_text(trainer)


@pytest.mark.slow
def test_unknown_axes_get_the_safest_rules_and_a_warning(nnunet_dirs, tmp_path):
    """A dataset whose images carry no usable direction (45 degrees oblique): no mirroring, limited
    rotation, and a warning in the training log."""
    folder = Path(nnunet_dirs["nnUNet_raw"]) / "Dataset965_Oblique"
    c = math.cos(math.radians(45))
    oblique = (1.0, 0.0, 0.0, 0.0, c, -c, 0.0, c, c)
    rng = np.random.default_rng(0)
    for i in range(2):
        label = np.zeros((16, 20, 24), np.uint8)
        label[4:12, 5:15, 6:18] = 1
        image = (label + rng.normal(0, 0.1, label.shape)).astype(np.float32)
        for array, path in ((image, folder / "imagesTr" / f"ob_{i:03d}_0000.nii.gz"),
                            (label, folder / "labelsTr" / f"ob_{i:03d}.nii.gz")):
            path.parent.mkdir(parents=True, exist_ok=True)
            itk = sitk.GetImageFromArray(array)
            itk.SetDirection(oblique)
            sitk.WriteImage(itk, str(path), True)
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "MR"}, "labels": {"background": 0, "spine": 1}, "numTraining": 2,
        "file_ending": ".nii.gz"}))
    plan_and_preprocess([965], preprocess_3d=False)
    trainer, rotation, _, mirror_axes, _ = configured("nnUNetTrainerSizeAdaptiveCE", folder, "3d_fullres")
    assert mirror_axes == () and trainer.inference_allowed_mirroring_axes is None
    assert rotation[1] <= MAX_ROTATION + 1e-9
    log = _log_text(trainer)
    assert "WARNING" in log and "safest rules" in log and "symtc_axes" in log
