"""`symtc instance-dataset` with a bad subject among good ones: report it with its file, skip it,
build the rest, exit 1; `--strict` stops at the first problem."""
import json

import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.dataset_conversion import ConversionError, skipped_cases
from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset
from nnunetv2_symtc.instance.cutouts import CutoutSpec
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps

CUTOUT = CutoutSpec((64.0, 120.0, 180.0), (4.0, 3.0, 3.0))


@pytest.fixture(scope="module")
def bids_with_a_corrupt_subject(tmp_path_factory):
    """Two good tiny SPINEPS subjects and one (``sub-1``) whose instance mask is not a NIfTI file."""
    root = tmp_path_factory.mktemp("bids")
    write_spineps(root, [(f"{i}", generate_subject(i, PhantomConfig.tiny())) for i in range(3)])
    corrupt = root / "sub-1_seg-vert_msk.nii.gz"
    corrupt.write_bytes(b"this is not an image")
    return root, corrupt


def _args(source, raw, *extra):
    return ["instance-dataset", "-i", str(source), "-d", "779", "-o", str(raw),
            "--cutout-mm", *map(str, CUTOUT.size_mm_zyx), "--spacing", *map(str, CUTOUT.spacing_zyx), *extra]


def test_a_corrupt_subject_is_reported_and_skipped(tmp_path, capsys, bids_with_a_corrupt_subject):
    source, corrupt = bids_with_a_corrupt_subject
    assert main(_args(source, tmp_path / "raw")) == 1
    err = capsys.readouterr().err
    assert str(corrupt) in err and "SKIPPED 1 case" in err
    folder = tmp_path / "raw" / "Dataset779_SPINEPSInstances"
    skipped = skipped_cases(folder)
    assert list(skipped) == ["sub-1"] and str(corrupt) in skipped["sub-1"][0]
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["numTraining"] == 12  # six vertebrae (T12-L5) of each of the two good subjects
    assert {p.name.split("_v")[0] for p in (folder / "labelsTr").iterdir()} == {"sub-0", "sub-2"}


def test_strict_stops_at_the_first_problem(tmp_path, bids_with_a_corrupt_subject):
    source, corrupt = bids_with_a_corrupt_subject
    with pytest.raises(ConversionError, match="--strict") as error:
        build_instance_dataset(source, 779, cutout=CUTOUT, strict=True, raw_dir=tmp_path / "raw")
    assert error.value.problems[0].file == str(corrupt)
    assert not (tmp_path / "raw" / "Dataset779_SPINEPSInstances").exists()
    assert main(_args(source, tmp_path / "raw", "--strict")) == 1


def test_a_subject_without_vertebral_bodies_is_a_problem(tmp_path):
    subject = generate_subject(0, PhantomConfig.tiny())
    empty = generate_subject(1, PhantomConfig.tiny())
    empty.spine_mask[empty.spine_mask == 49] = 41  # no vertebral body: no cutout centre
    write_spineps(tmp_path / "bids", [("0", subject), ("1", empty)])
    folder = build_instance_dataset(tmp_path / "bids", 780, cutout=CUTOUT, raw_dir=tmp_path / "raw")
    skipped = skipped_cases(folder)
    assert list(skipped) == ["sub-1"] and "no vertebra with a vertebral body" in skipped["sub-1"][0]
