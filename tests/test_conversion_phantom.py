"""All three converters on phantom output (``nnunetv2_symtc.phantom``): nnU-Net's dataset integrity
check passes, and the reverse maps restore the phantom's source masks."""
import json
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_symtc.dataset_conversion import convert_spider, convert_spineps, convert_ssmspine, map_to_source
from nnunetv2_symtc.io import read_image
from nnunetv2_symtc.labels import SPIDER_PARTIAL_OFFSET

phantom = pytest.importorskip("nnunetv2_symtc.phantom")


def _verify(folder: Path) -> None:
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(folder), num_processes=1)


def _json(path: Path):
    with open(path) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def phantom_spider(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "SPIDER"
    subjects = [(pid, phantom.generate_subject(pid, phantom.PhantomConfig.tiny())) for pid in range(1, 7)]
    phantom.write_spider(root, subjects, sequences=("t1", "t2"), validation_pids=(6,))
    return root


def test_phantom_spider_levels_integrity_folds_and_round_trip(phantom_spider, tmp_path):
    folder = convert_spider(phantom_spider, 61, labels="levels", max_level=8, partial="ignore", raw_dir=tmp_path)
    dataset = _json(folder / "dataset.json")
    assert dataset["labels"]["ignore"] == 18  # 8 vertebra + 8 disc levels + canal + 1
    assert dataset["numTraining"] == 10 and len(list((folder / "imagesTs").iterdir())) == 2
    assert dataset["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    splits = _json(folder / "splits_final.json")
    assert len(splits) == 5 and all(len(s["val"]) == 2 and s["val"][0].split("_")[0] == s["val"][1].split("_")[0]
                                    for s in splits)
    _verify(folder)
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    for path in written:
        source = read_image(phantom_spider / "masks" / path.name)[0]
        # exact, except that ignored partial vertebrae come back as background (documented)
        expected = np.where((source > SPIDER_PARTIAL_OFFSET) & (source < 200), 0, source)
        assert (source > SPIDER_PARTIAL_OFFSET).any()
        assert np.array_equal(read_image(path)[0], expected), path.name


def test_phantom_spider_semantic_reverse_numbers_levels(phantom_spider, tmp_path):
    """Vertebrae touch in the phantom (facets), so numbering separates them between the discs: every
    vertebra (the partial top one merged in, coming back as a full one) gets its SPIDER level (majority
    of its voxels, >= 90% of all vertebra voxels: facet contacts are ambiguous); discs and canal exact."""
    folder = convert_spider(phantom_spider, 62, sequences=["t2"], raw_dir=tmp_path)
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    assert len(written) == 5
    for path in written:
        back = read_image(path)[0]
        source = read_image(phantom_spider / "masks" / path.name)[0]
        expected = np.where((source > SPIDER_PARTIAL_OFFSET) & (source < 200), source - SPIDER_PARTIAL_OFFSET, source)
        assert sorted(np.unique(back).tolist()) == sorted(np.unique(expected).tolist()), path.name
        not_vertebra = (expected >= 100) | (expected == 0)
        assert np.array_equal(back[not_vertebra], expected[not_vertebra]), path.name
        for level in np.unique(expected[~not_vertebra]):
            values, counts = np.unique(back[expected == level], return_counts=True)
            assert values[np.argmax(counts)] == level, (path.name, level, values, counts)
        assert (back[~not_vertebra] == expected[~not_vertebra]).mean() >= 0.9, path.name


def test_phantom_spineps_integrity_and_exact_round_trip(tmp_path):
    subjects = [(f"ph{i}", phantom.generate_subject(100 + i, phantom.PhantomConfig.tiny())) for i in range(2)]
    root = phantom.write_spineps(tmp_path / "bids", subjects)
    folder = convert_spineps(root, 63, raw_dir=tmp_path / "raw")
    assert sorted(p.name for p in (folder / "instancesTr").iterdir()) == ["sub-ph0.nii.gz", "sub-ph1.nii.gz"]
    _verify(folder)
    for path in map_to_source(folder, folder / "labelsTr", tmp_path / "back"):
        assert np.array_equal(read_image(path)[0], read_image(root / path.name)[0])
    for subject_id, subject in subjects:
        assert np.array_equal(read_image(folder / "instancesTr" / f"sub-{subject_id}.nii.gz")[0], subject.vert_mask)


def test_spineps_test_subjects_are_held_out_with_their_instances(tmp_path):
    subjects = [(f"ph{i}", phantom.generate_subject(110 + i, phantom.PhantomConfig.tiny())) for i in range(3)]
    root = phantom.write_spineps(tmp_path / "bids", subjects)
    with pytest.raises(ValueError, match=r"\['nobody'\].*subjects found: \['ph0', 'ph1', 'ph2'\]"):
        convert_spineps(root, 65, raw_dir=tmp_path / "raw", test_subjects=["sub-nobody"])
    assert not (tmp_path / "raw").exists() or not any((tmp_path / "raw").iterdir())
    folder = convert_spineps(root, 65, raw_dir=tmp_path / "raw", test_subjects=["sub-ph2"])
    dataset = _json(folder / "dataset.json")
    assert dataset["numTraining"] == 2 and dataset["symtc_instances"]["folders"] == ["instancesTr", "instancesTs"]
    assert [p.name for p in (folder / "imagesTs").iterdir()] == ["sub-ph2_0000.nii.gz"]
    assert np.array_equal(read_image(folder / "instancesTs" / "sub-ph2.nii.gz")[0], subjects[2][1].vert_mask)
    (back,) = map_to_source(folder, folder / "labelsTs", tmp_path / "back")
    assert np.array_equal(read_image(back)[0], read_image(root / back.name)[0])
    splits = _json(folder / "splits_final.json")
    assert all("sub-ph2" not in fold["train"] + fold["val"] for fold in splits)
    _verify(folder)


def test_phantom_ssmspine_integrity(tmp_path):
    root = phantom.write_ssmspine(tmp_path / "SSMSpine", 2, augs=1)
    folder = convert_ssmspine(root, 64, raw_dir=tmp_path / "raw")
    dataset = _json(folder / "dataset.json")
    assert dataset["numTraining"] == 1 and len(list((folder / "imagesTs").iterdir())) == 1
    image, geometry = read_image(next((folder / "imagesTr").iterdir()))
    assert image.shape == (1, 512, 512) and geometry.orientation == "PIR"
    _verify(folder)


@pytest.mark.parametrize("partial", ["level", "background"])
def test_phantom_spider_levels_partial_vertebrae_come_back_as_stated(phantom_spider, tmp_path, partial):
    """SPIDER ``levels`` maps back exactly except for the "partially visible" mark (101-125), which no
    class keeps: as full vertebrae with the default ``level``, as background with ``background``; the
    dataset records which."""
    folder = convert_spider(phantom_spider, 63, sequences=["t2"], labels="levels", partial=partial, raw_dir=tmp_path)
    note = _json(folder / "dataset.json")["symtc_conversion"]["reverse_map"]
    assert note.startswith("exact for vertebrae, discs and the spinal canal; partially visible vertebrae (101-125)")
    assert ("(100 + k -> k)" if partial == "level" else "come back as 0") in note
    written = map_to_source(folder, folder / "labelsTr", tmp_path / "back")
    assert written
    for path in written:
        source = read_image(phantom_spider / "masks" / path.name)[0]
        partial_voxels = (source > SPIDER_PARTIAL_OFFSET) & (source < 200)
        assert partial_voxels.any()
        expected = np.where(partial_voxels, source - SPIDER_PARTIAL_OFFSET if partial == "level" else 0, source)
        assert np.array_equal(read_image(path)[0], expected), path.name
