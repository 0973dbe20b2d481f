"""SPIDER conversion, label schemes, reverse maps, splits, safety and validation errors, on tiny
hand-made SPIDER folders (``conversion_sources``). nnU-Net's integrity check on SPIDER output runs in
``test_conversion_phantom``."""
import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from conversion_sources import (image_for, make_spider, pir_geometry, spider_mask_pir,
                                standard_spider, write_oriented)
from nnunetv2_symtc.cli import main as symtc_main
from nnunetv2_symtc.dataset_conversion import ConversionError, convert_spider, map_to_source, skipped_cases
from nnunetv2_symtc.dataset_conversion.reverse import spider_semantic_to_source
from nnunetv2_symtc.dataset_conversion.writer import TEMP_PREFIX, direction_for, grouped_splits
from nnunetv2_symtc.io import Geometry, read_image
from nnunetv2_symtc.labels import LabelMap, spider_levels_map, spider_semantic_map


def _tree_digest(folder: Path) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


# ------------------------------------------------------------------------------- label schemes
def test_spider_semantic_scheme_partial_options():
    source = np.array([0, 1, 7, 25, 100, 101, 125, 201, 225])
    assert spider_semantic_map("vertebra").encode(source).tolist() == [0, 1, 1, 1, 3, 1, 1, 2, 2]
    ignore = spider_semantic_map("ignore")
    assert ignore.ignore_label == 4 and ignore.encode(source).tolist() == [0, 1, 1, 1, 3, 4, 4, 2, 2]
    assert spider_semantic_map("background").encode(source).tolist() == [0, 1, 1, 1, 3, 0, 0, 2, 2]
    assert list(spider_semantic_map().dataset_json_labels()) == ["background", "vertebra", "disc", "spinal_canal"]
    with pytest.raises(ValueError, match="partial"):
        spider_semantic_map("drop")


def test_spider_levels_scheme_partial_options_and_round_trip():
    levels = spider_levels_map(max_level=4)
    labels = levels.dataset_json_labels()
    assert labels["vertebra_1"] == 1 and labels["vertebra_4"] == 4 and labels["disc_1"] == 5
    assert labels["spinal_canal"] == 9 and len(labels) == 10
    exact = np.array([0, 1, 2, 3, 4, 100, 201, 202, 203, 204])
    assert np.array_equal(levels.decode(levels.encode(exact)), exact)
    assert levels.encode(np.array([102])).tolist() == [2] and levels.decode(levels.encode(np.array([102]))).tolist() == [2]
    ignore = spider_levels_map(4, "ignore")
    assert ignore.encode(np.array([103, 3])).tolist() == [ignore.ignore_label, 3]
    assert spider_levels_map(4, "background").encode(np.array([104, 4])).tolist() == [0, 4]
    with pytest.raises(ValueError, match=r"\[5, 105, 205\]"):
        levels.encode(np.array([5, 105, 205, 1]))
    assert LabelMap.from_json(json.loads(json.dumps(levels.to_json()))) == levels


def test_spider_semantic_reverse_numbers_components_bottom_up():
    mask = spider_mask_pir(3)
    semantic = spider_semantic_map()
    back = spider_semantic_to_source(semantic.encode(mask), pir_geometry(), semantic)
    assert np.array_equal(back, mask)
    # the array flipped along superior-inferior and described by a geometry whose rows run inferior ->
    # superior is the same anatomy: the numbering must follow anatomy, not the array order
    flipped_geometry = Geometry((4.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction_for("PSR"))
    flipped = mask[:, ::-1]
    assert np.array_equal(spider_semantic_to_source(semantic.encode(flipped), flipped_geometry, semantic), flipped)
    assert not np.array_equal(spider_semantic_to_source(semantic.encode(flipped), pir_geometry(), semantic), flipped)


# ------------------------------------------------------------------------------- splits
def test_grouped_splits_keep_patients_together_and_cover_every_case():
    groups = {f"{p}_{s}": str(p) for p in range(1, 8) for s in ("t1", "t2", "t2_SPACE")}
    splits, note = grouped_splits(groups)
    assert len(splits) == 5 and "5 folds" in note
    vals = [c for s in splits for c in s["val"]]
    assert sorted(vals) == sorted(groups)
    for split in splits:
        assert not {groups[c] for c in split["val"]} & {groups[c] for c in split["train"]}
    assert grouped_splits(groups) == (splits, note)
    few, note = grouped_splits({"1_t1": "1", "1_t2": "1", "2_t1": "2"})
    assert len(few) == 2 and "only 2 folds" in note
    single, note = grouped_splits({"1_t1": "1", "1_t2": "1"})
    assert single == [{"train": ["1_t1", "1_t2"], "val": ["1_t1", "1_t2"]}] and "only 1 patient" in note


# ------------------------------------------------------------------------------- SPIDER end to end
@pytest.fixture(scope="module")
def spider_source(tmp_path_factory):
    root = tmp_path_factory.mktemp("spider_src")
    source = standard_spider(root / "SPIDER", pids=(1, 2, 3, 4, 5, 6), validation=(6,))
    return source, _tree_digest(source)


def test_spider_levels_conversion_layout_geometry_and_exact_round_trip(spider_source, tmp_path):
    source, digest = spider_source
    folder = convert_spider(source, 11, labels="levels", max_level=3, raw_dir=tmp_path / "raw")
    assert folder == tmp_path / "raw" / "Dataset011_SPIDER"
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["6_t1_0000.nii.gz", "6_t2_0000.nii.gz"]
    train_cases = sorted(p.name[:-len(".nii.gz")] for p in (folder / "labelsTr").iterdir())
    assert train_cases == [f"{p}_{s}" for p in range(1, 6) for s in ("t1", "t2")]
    dataset = _json(folder / "dataset.json")
    assert dataset["numTraining"] == 10 and dataset["symtc_orientation"] == "PIR"
    assert dataset["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    assert dataset["labels"]["spinal_canal"] == 7
    # arrays equal the PIR reference, world geometry preserved
    image, geometry = read_image(folder / "imagesTr" / "1_t2_0000.nii.gz")
    assert np.array_equal(image, image_for(spider_mask_pir(3), seed=11))
    assert geometry.orientation == "PIR" and np.allclose(geometry.origin_xyz, pir_geometry().origin_xyz)
    assert np.allclose(geometry.spacing_zyx, pir_geometry().spacing_zyx)
    classes, _ = read_image(folder / "labelsTr" / "1_t2.nii.gz")
    assert np.array_equal(classes, spider_levels_map(3).encode(spider_mask_pir(3)))
    # t1 and t2 of a patient always share a fold
    for split in _json(folder / "splits_final.json"):
        for part in ("train", "val"):
            patients = {c.split("_")[0] for c in split[part]}
            assert all(f"{p}_t1" in split[part] and f"{p}_t2" in split[part] for p in patients)
    # exact round trip, back in the source orientation and file names
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    assert len(written) == 10
    for path in written:
        back = sitk.ReadImage(str(path))
        original = sitk.ReadImage(str(source / "masks" / path.name))
        assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(original))
        assert np.allclose(back.GetDirection(), original.GetDirection()) and np.allclose(back.GetOrigin(), original.GetOrigin())
    assert _tree_digest(source) == digest  # sources untouched


def test_spider_semantic_conversion_reverse_and_reports(spider_source, tmp_path, capsys):
    source, _ = spider_source
    folder = convert_spider(source, 12, "SpiderSem", sequences=["t2"], raw_dir=tmp_path,
                            keep_validation_in_training=True)
    out = capsys.readouterr().out
    assert "numbered bottom-up" in out
    dataset = _json(folder / "dataset.json")
    assert dataset["numTraining"] == 6 and "bottom-up" in dataset["symtc_conversion"]["reverse_map"]
    assert not (folder / "labelsTr" / "1_t1.nii.gz").exists()
    assert [len(s["val"]) for s in _json(folder / "splits_final.json")] == [2, 1, 1, 1, 1]
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    for path in written:
        assert np.array_equal(read_image(path)[0], read_image(source / "masks" / path.name)[0])


def test_spider_multichannel_and_partial_ignore(tmp_path):
    mask = spider_mask_pir(3, partial_top=True)
    series = {f"{p}_{s}": (image_for(mask, p * 10 + k), mask) for p in (1, 2) for k, s in enumerate(("t1", "t2"))}
    source = make_spider(tmp_path / "src", series, {n: "training" for n in series})
    folder = convert_spider(source, 13, sequences=["t1", "t2"], multichannel=True, labels="levels", max_level=3,
                            partial="ignore", raw_dir=tmp_path / "raw")
    dataset = _json(folder / "dataset.json")
    assert dataset["channel_names"] == {"0": "t1", "1": "t2"} and dataset["labels"]["ignore"] == 8
    assert sorted(p.name for p in (folder / "imagesTr").iterdir()) == [
        "1_t1-t2_0000.nii.gz", "1_t1-t2_0001.nii.gz", "2_t1-t2_0000.nii.gz", "2_t1-t2_0001.nii.gz"]
    assert np.array_equal(read_image(folder / "imagesTr" / "2_t1-t2_0001.nii.gz")[0], image_for(mask, 21))
    classes = read_image(folder / "labelsTr" / "1_t1-t2.nii.gz")[0]
    assert set(np.unique(classes[mask == 103]).tolist()) == {8}


def test_spider_output_is_deterministic_serial_and_parallel(spider_source, tmp_path):
    source, _ = spider_source
    a = convert_spider(source, 14, raw_dir=tmp_path / "a", labels="levels", max_level=3)
    b = convert_spider(source, 14, raw_dir=tmp_path / "b", labels="levels", max_level=3, num_processes=2)
    assert _tree_digest(a) == _tree_digest(b)


def test_spider_safety_existing_target_overwrite_and_stale_preprocessed(spider_source, tmp_path, monkeypatch, capsys):
    source, _ = spider_source
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    monkeypatch.setenv("nnUNet_raw", str(raw))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    first = convert_spider(source, 15, sequences=["t2"])
    (raw / "Dataset015_SPIDER" / "marker").write_text("old")
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        convert_spider(source, 15, "Other", sequences=["t2"])
    assert not [p for p in raw.iterdir() if p.name.startswith(TEMP_PREFIX)]  # temp folder cleaned up
    (pre / "Dataset015_SPIDER").mkdir(parents=True)
    (pre / "Dataset015_SPIDER" / "splits_final.json").write_text("[]")
    shutil.move(raw / "Dataset015_SPIDER", tmp_path / "moved_away")
    with pytest.raises(ValueError, match="pre/Dataset015_SPIDER already exists"):  # stale preprocessed alone
        convert_spider(source, 15, "Other", sequences=["t2"])
    shutil.move(tmp_path / "moved_away", raw / "Dataset015_SPIDER")
    second = convert_spider(source, 15, "Other", sequences=["t2"], overwrite=True)
    assert not first.exists() and second.name == "Dataset015_Other"
    assert not (pre / "Dataset015_SPIDER").exists()
    assert "removing stale preprocessed dataset" in capsys.readouterr().out
    assert [p.name for p in raw.iterdir()] == ["Dataset015_Other"]


# ------------------------------------------------------------------------------- validation errors
@pytest.fixture(scope="module")
def broken_spider(tmp_path_factory):
    """Two good patients and one bad series per kind of problem."""
    root = tmp_path_factory.mktemp("broken") / "SPIDER"
    mask = spider_mask_pir(3)
    good = {f"{p}_t2": (image_for(mask, p), mask) for p in (1, 2)}
    unknown = mask.copy()
    unknown[0, 0, 0], unknown[0, 0, 1] = 77, 300
    nan_image = image_for(mask).astype(np.float32)
    nan_image[0, 0, 0] = np.nan
    bad = {"3_t2": (image_for(mask), unknown), "4_t2": (image_for(mask), np.zeros_like(mask)),
           "5_t2": (nan_image, mask)}
    make_spider(root, {**good, **bad}, {n: "training" for n in [*good, *bad, "6_t2", "7_t2", "8_t2", "9_t2", "10_t2"]})
    write_oriented(root / "images" / "6_t2.mha", image_for(mask), "LPS")                       # no mask
    write_oriented(root / "masks" / "7_t2.mha", mask, "LPS")                                   # no image
    write_oriented(root / "images" / "8_t2.mha", image_for(mask), "LPS")
    write_oriented(root / "masks" / "8_t2.mha", mask, "LPS", pir_geometry(origin=(0.0, 0.0, 0.0)))  # other grid
    (root / "images" / "9_t2.mha").write_bytes(b"not an image")                                # unreadable
    write_oriented(root / "masks" / "9_t2.mha", mask, "LPS")
    for folder, array in (("images", image_for(mask)), ("masks", mask)):  # a 2D slice with its 2D mask
        sitk.WriteImage(sitk.GetImageFromArray(array[len(array) // 2]), str(root / folder / "10_t2.mha"))
    return root


EXPECTED_PROBLEMS = {
    "3_t2": "label values [77, 300] are not valid SPIDER labels",
    "4_t2": "mask is empty",
    "5_t2": "1 NaN/infinite voxels",
    "6_t2": "image without mask",
    "7_t2": "mask without image",
    "8_t2": "not on the grid of",
    "9_t2": "cannot be read as an image",
    "10_t2": "expected a 3D scalar volume",
}


def test_every_validation_problem_is_reported_and_skipped(broken_spider, tmp_path, capsys):
    folder = convert_spider(broken_spider, 16, raw_dir=tmp_path)
    skipped = skipped_cases(folder)
    assert sorted(skipped) == sorted(EXPECTED_PROBLEMS)
    for case, text in EXPECTED_PROBLEMS.items():
        assert any(text in p and f"{case}.mha" in p for p in skipped[case]), (case, skipped[case])
    assert sorted(p.name for p in (folder / "labelsTr").iterdir()) == ["1_t2.nii.gz", "2_t2.nii.gz"]
    assert "SKIPPED 8 case(s)" in capsys.readouterr().err


def test_strict_stops_at_first_problem_and_cli_exit_codes(broken_spider, tmp_path, spider_source, capsys):
    with pytest.raises(ConversionError, match="--strict") as info:
        convert_spider(broken_spider, 17, raw_dir=tmp_path, strict=True)
    assert len(info.value.problems) == 1 and not list(tmp_path.iterdir())
    assert symtc_main(["convert", "spider", "-i", str(broken_spider), "-d", "18", "-o", str(tmp_path)]) == 1
    assert "8 case(s) skipped" in capsys.readouterr().out
    assert symtc_main(["convert", "spider", "-i", str(spider_source[0]), "-d", "19", "-o", str(tmp_path),
                       "--sequences", "t2", "--labels", "levels", "--max-level", "2"]) == 1  # level 3 unknown
    assert symtc_main(["convert", "spider", "-i", str(spider_source[0]), "-d", "20", "-o", str(tmp_path),
                       "--sequences", "t2"]) == 0
    assert symtc_main(["convert", "to-source", "-d", str(tmp_path / "Dataset020_SPIDER"),
                       "-i", str(tmp_path / "Dataset020_SPIDER" / "labelsTr"), "-o", str(tmp_path / "back")]) == 0
    assert len(list((tmp_path / "back").glob("*_t2.mha"))) == 5
