"""SSMSpine (.pt) and SPINEPS/BIDS conversion, including tptbox's real sample MRI, and nnU-Net's
dataset integrity check on each result."""
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conversion_sources import make_ssmspine, spineps_arrays_pir, ssm_sample, write_oriented
from nnunetv2_symtc.dataset_conversion import ConversionError, convert_spineps, convert_ssmspine, map_to_source, skipped_cases
from nnunetv2_symtc.dataset_conversion.spineps import BidsName, find_cases
from nnunetv2_symtc.dataset_conversion.ssmspine import read_landmarks
from nnunetv2_symtc.io import read_image
from nnunetv2_symtc.labels import SPINEPS_SEMANTIC_NAMES, spineps_semantic_map


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


def _digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _verify(folder: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


@pytest.fixture(scope="module")
def tptbox_sample() -> Path:
    tptbox = pytest.importorskip("TPTBox")
    folder = Path(os.path.dirname(tptbox.__file__)) / "tests" / "sample_mri"
    if not (folder / "sub-mri_label-6_T2w.nii.gz").is_file():
        pytest.skip("tptbox's sample MRI is not installed")
    return folder


# ------------------------------------------------------------------------------- SSMSpine
def test_ssmspine_conversion_2d_layout_landmarks_folds(tmp_path):
    source = make_ssmspine(tmp_path / "SSMSpine", {"p1": 2, "p2": 2, "p3": 1}, {"p90": 2})
    folder = convert_ssmspine(source, 41, image_key="img_corrected", raw_dir=tmp_path / "raw")
    dataset = _json(folder / "dataset.json")
    assert dataset["numTraining"] == 5 and dataset["channel_names"] == {"0": "img_corrected"}
    assert dataset["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    assert list(dataset["labels"])[1:] == ["L1", "L2", "L3", "L4", "L5", "S1", "L1/L2", "L2/L3", "L3/L4", "L4/L5", "L5/S1"]
    assert sorted(p.name for p in (folder / "labelsTs").iterdir()) == ["p90_aug0.nii.gz", "p90_aug1.nii.gz"]
    image, geometry = read_image(folder / "imagesTr" / "p2_aug1_0000.nii.gz")
    import torch

    original = torch.load(source / "Train" / "p2" / "aug1.pt", weights_only=True)
    assert image.shape == (1, 32, 32) and geometry.spacing_zyx == (1.0, 1.0, 1.0) and geometry.orientation == "PIR"
    assert np.array_equal(image[0], original["img_corrected"].numpy())
    assert np.array_equal(read_image(folder / "labelsTr" / "p2_aug1.nii.gz")[0][0], original["label"].numpy()[0])
    landmarks = read_landmarks(folder / "landmarksTr" / "p2_aug1.npz")
    assert sorted(landmarks) == ["bone", "disk", "shape"]
    assert np.allclose(landmarks["disk"], original["disk"].numpy()) and landmarks["bone"].shape == (6, 236, 2)
    assert (folder / "landmarksTs" / "p90_aug0.npz").is_file()
    for split in _json(folder / "splits_final.json"):
        assert not {c.split("_")[0] for c in split["val"]} & {c.split("_")[0] for c in split["train"]}
    again = convert_ssmspine(source, 41, image_key="img_corrected", raw_dir=tmp_path / "raw_again")
    assert _digest(again) == _digest(folder)  # byte-identical re-run, landmark archives included


def test_ssmspine_pickle_safety_and_bad_files(tmp_path, capsys):
    import torch

    source = make_ssmspine(tmp_path / "src", {"p1": 1, "p2": 1}, {}, as_tensors=False)  # numpy values
    with pytest.raises(ConversionError, match="needs full unpickling.*--trust-pickle"):
        convert_ssmspine(source, 42, raw_dir=tmp_path / "raw")
    bad = ssm_sample(3)
    bad["label"] = bad["label"] * 0 + 12
    (source / "Train" / "p3").mkdir()
    torch.save(bad, source / "Train" / "p3" / "aug0.pt")
    (source / "Train" / "p3" / "aug1.pt").write_bytes(b"garbage")
    folder = convert_ssmspine(source, 42, raw_dir=tmp_path / "raw", trust_pickle=True)
    skipped = skipped_cases(folder)
    assert sorted(skipped) == ["p3_aug0", "p3_aug1"]
    assert "label values [12] are not valid SSMSpine labels" in skipped["p3_aug0"][0]
    assert "cannot be read as a torch file" in skipped["p3_aug1"][0]
    assert _json(folder / "dataset.json")["numTraining"] == 2


# ------------------------------------------------------------------------------- SPINEPS / BIDS
def test_bids_names_match_masks_by_entities():
    image = BidsName.parse("sub-mri_label-6_T2w.nii.gz")
    mask = BidsName.parse("sub-mri_seg-subreg_label-6_msk.nii.gz")
    spineps_style = BidsName.parse("sub-1_ses-2_sequ-301_mod-T2w_seg-spine_msk.nii.gz")
    assert image.suffix == "T2w" and mask.suffix == "msk" and mask.get("seg") == "subreg"
    assert image.match_key() == mask.match_key() and image.stem == "sub-mri_label-6"
    assert spineps_style.match_key() == BidsName.parse("sub-1_sequ-301_ses-2_T2w.nii.gz").match_key()
    assert BidsName.parse("T2w.nii.gz") is None and BidsName.parse("sub-1_T2w.mha") is None


def test_spineps_on_tptbox_sample_exact_round_trip_and_integrity(tptbox_sample, tmp_path):
    folder = convert_spineps(tptbox_sample, 51, raw_dir=tmp_path)
    dataset = _json(folder / "dataset.json")
    assert dataset["labels"] == spineps_semantic_map().dataset_json_labels()
    assert dataset["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    assert dataset["symtc_conversion"]["reoriented_to"] == "PIR" and dataset["numTraining"] == 1
    case = "sub-mri_label-6"
    vert_source, _ = read_image(tptbox_sample / "sub-mri_seg-vert_label-6_msk.nii.gz")
    assert np.array_equal(read_image(folder / "instancesTr" / f"{case}.nii.gz")[0], vert_source)
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    assert [p.name for p in written] == ["sub-mri_seg-subreg_label-6_msk.nii.gz"]
    back, original = (sitk.ReadImage(str(p)) for p in (written[0], tptbox_sample / written[0].name))
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
    assert np.allclose(back.GetOrigin(), original.GetOrigin()) and np.allclose(back.GetSpacing(), original.GetSpacing())
    _verify(folder)


def _bids_case(root: Path, subject: str, orientation: str, semantic=None, instance=None, session="1"):
    image, sem, inst = spineps_arrays_pir()
    base = root / "rawdata" / f"sub-{subject}" / f"ses-{session}" / "anat"
    derivatives = root / "derivatives" / f"sub-{subject}"
    write_oriented(base / f"sub-{subject}_ses-{session}_T2w.nii.gz", image, orientation)
    write_oriented(derivatives / f"sub-{subject}_ses-{session}_mod-T2w_seg-spine_msk.nii.gz",
                   sem if semantic is None else semantic, orientation)
    write_oriented(derivatives / f"sub-{subject}_ses-{session}_mod-T2w_seg-vert_msk.nii.gz",
                   inst if instance is None else instance, orientation)


def test_spineps_keep_orientation_records_axes_from_geometry_and_optional_labels(tmp_path):
    _, semantic, _ = spineps_arrays_pir()
    newer = semantic.copy()
    newer[1:5, 11, 1:6] = 53  # inferior endplate (newer SPINEPS)
    for subject in ("a", "b"):
        _bids_case(tmp_path / "bids", subject, "LAS", semantic=newer if subject == "b" else None)
    folder = convert_spineps(tmp_path / "bids", 52, keep_orientation=True, raw_dir=tmp_path / "raw")
    dataset = _json(folder / "dataset.json")
    assert dataset["symtc_orientation"] == "LAS" and dataset["symtc_conversion"]["options"]["keep_orientation"]
    # LAS: ITK x = left-right, y = anterior-posterior, z = superior-inferior -> array (z, y, x)
    assert dataset["symtc_axes"] == {"left_right": 2, "superior_inferior": 0, "anterior_posterior": 1}
    labels = dataset["labels"]
    assert labels["endplate_inferior"] == len(SPINEPS_SEMANTIC_NAMES) + 1 and "endplate_superior" not in labels
    classes = read_image(folder / "labelsTr" / "sub-b_ses-1.nii.gz")[0]
    assert (classes == labels["endplate_inferior"]).sum() == 4 * 5
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    assert np.array_equal(read_image(tmp_path / "back" / "sub-b_ses-1_mod-T2w_seg-spine_msk.nii.gz")[0],
                          read_image(tmp_path / "bids" / "derivatives" / "sub-b" / written[1].name)[0])
    reoriented = convert_spineps(tmp_path / "bids", 53, raw_dir=tmp_path / "raw")
    assert _json(reoriented / "dataset.json")["symtc_orientation"] == "PIR"
    assert np.array_equal(read_image(reoriented / "labelsTr" / "sub-a_ses-1.nii.gz")[0],
                          spineps_semantic_map([53]).encode(semantic))


def test_spineps_validation_problems(tmp_path):
    _, semantic, instance = spineps_arrays_pir()
    bad_instance = instance.copy()
    bad_instance[0, 0, 0], bad_instance[0, 0, 1] = 99, 250
    bad_semantic = semantic.copy()
    bad_semantic[0, 0, 0] = 63
    _bids_case(tmp_path, "good", "PIR")
    _bids_case(tmp_path, "inst", "PIR", instance=bad_instance)
    _bids_case(tmp_path, "sem", "PIR", semantic=bad_semantic)
    _bids_case(tmp_path, "novert", "PIR")
    (tmp_path / "derivatives" / "sub-novert" / "sub-novert_ses-1_mod-T2w_seg-vert_msk.nii.gz").unlink()
    write_oriented(tmp_path / "derivatives" / "sub-ghost_ses-1_seg-spine_msk.nii.gz", semantic, "PIR")
    cases, problems = find_cases(tmp_path)
    assert [c.case for c in cases] == ["sub-good_ses-1", "sub-inst_ses-1", "sub-sem_ses-1"]
    assert sorted(p.message for p in problems) == ["image without seg-vert mask", "mask without image"]
    folder = convert_spineps(tmp_path, 54, raw_dir=tmp_path / "raw")
    skipped = skipped_cases(folder)
    assert "label values [99, 250] are not valid SPINEPS instance labels" in skipped["sub-inst_ses-1"][0]
    assert "label values [63] are not valid SPINEPS semantic labels" in skipped["sub-sem_ses-1"][0]
    assert sorted(skipped) == ["sub-ghost_ses-1", "sub-inst_ses-1", "sub-novert_ses-1", "sub-sem_ses-1"]
    with pytest.raises(ConversionError, match="--strict"):
        convert_spineps(tmp_path, 55, raw_dir=tmp_path / "raw", strict=True)
