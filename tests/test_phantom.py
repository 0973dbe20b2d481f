"""The synthetic lumbar spine phantom: anatomy, MR contrast, geometry and the three writers."""
import csv

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.io import Geometry, read_image, reorient, to_sitk
from nnunetv2_symtc.phantom import (PhantomConfig, generate_subject, write_spider, write_spineps,
                                    write_ssmspine)
from nnunetv2_symtc.phantom.ssmspine import generate_ssmspine_sample, ssmspine_split
from nnunetv2_symtc.phantom.writers import SPIDER_ORIENTATION


@pytest.fixture(scope="module")
def subject():
    return generate_subject(3)


@pytest.fixture(scope="module")
def tiny():
    return generate_subject(5, PhantomConfig.tiny())


def centroid_world(geometry: Geometry, mask: np.ndarray) -> np.ndarray:
    """LPS world (x, y, z) of a mask's centroid."""
    return geometry.index_to_world(np.argwhere(mask).mean(axis=0))


def mid_slice(subject) -> int:
    """Index of the sagittal slice closest to the spine's midline."""
    x = subject.geometry.index_to_world(np.stack([np.arange(subject.shape[0]), np.zeros(subject.shape[0]),
                                                  np.zeros(subject.shape[0])], axis=1))[:, 0]
    return int(np.argmin(np.abs(x - subject.anatomy.midline_x)))


def test_determinism_and_variation(tiny):
    again = generate_subject(5, PhantomConfig.tiny())
    for seq in ("t1", "t2"):
        np.testing.assert_array_equal(again.images[seq], tiny.images[seq])
    np.testing.assert_array_equal(again.vert_mask, tiny.vert_mask)
    assert again.geometry == tiny.geometry
    # A sequence's image does not depend on which other sequences are rendered.
    np.testing.assert_array_equal(generate_subject(5, PhantomConfig.tiny(sequences=("t2",))).images["t2"],
                                  tiny.images["t2"])
    other = generate_subject(6, PhantomConfig.tiny())
    assert other.vert_mask.shape != tiny.vert_mask.shape or not np.array_equal(other.vert_mask, tiny.vert_mask)


def test_default_grid_is_realistic_pir(subject):
    g = subject.geometry
    assert g.orientation == "PIR" and g.anatomical_axes()["left_right"] == 0
    thick, si, ap = g.spacing_zyx
    assert 3.3 <= thick <= 4.5 and 0.6 <= si <= 0.9 and si == ap
    assert subject.shape[0] == 15 and 250 <= subject.shape[1] * si <= 420 and 240 <= subject.shape[2] * ap <= 310
    assert all(img.dtype == np.float32 and img.shape == subject.shape for img in subject.images.values())
    assert subject.spine_mask.dtype == np.uint8 and subject.vert_mask.dtype == np.uint16


def test_spineps_label_conventions(subject):
    allowed = set(L.SPINEPS_SEMANTIC_NAMES)
    assert set(np.unique(subject.spine_mask).tolist()) == allowed | {0}
    values = set(np.unique(subject.vert_mask).tolist()) - {0}
    assert all(L.is_spineps_instance_value(v) for v in values)
    assert subject.vertebra_ids == (19, 20, 21, 22, 23, 24, 26)
    assert {v for v in values if v < 100} == set(subject.vertebra_ids)
    # Discs 100+X and endplates 200+X sit directly below vertebra X and above the next one.
    bones = subject.bone_ids()
    z_of = {v: centroid_world(subject.geometry, bones == v)[2] for v in subject.vertebra_ids}
    for x in (20, 21, 22, 23, 24):
        below = 26 if x == 24 else x + 1
        for value in (L.SPINEPS_DISC_OFFSET + x, L.SPINEPS_ENDPLATE_OFFSET + x):
            z = centroid_world(subject.geometry, subject.vert_mask == value)[2]
            assert z_of[below] < z < z_of[x], (value, z, z_of[x], z_of[below])
    # The sacrum has no endplate label; L1's upper endplate faces the disc below T12 (219).
    assert L.SPINEPS_ENDPLATE_OFFSET + 26 not in values and 219 in values
    # Semantic and instance masks agree: bone <-> vertebra ids, discs <-> 100+X, endplates <-> 200+X.
    spine, vert = subject.spine_mask, subject.vert_mask
    assert np.all((vert == 26) == (spine == 26))
    assert np.all(np.isin(spine[(vert > 0) & (vert < 100) & (vert != 26)], L.VERTEBRA_SUBREGIONS))
    assert np.all(spine[(vert > 100) & (vert < 200)] == L.DISC)
    assert np.all(spine[vert > 200] == L.ENDPLATE)
    assert np.all(vert[np.isin(spine, (L.SPINAL_CANAL, L.SPINAL_CORD))] == 0)


def test_field_of_view_contract(subject, tiny):
    for s in (subject, tiny):
        assert s.partial_ids[0] == s.vertebra_ids[0] == 19
        assert set(s.partial_ids) <= {19, 26}
        for value in (120, 121, 122, 123, 124, 24):
            m = s.vert_mask == value
            assert m.any() and not (m[:, 0].any() or m[:, -1].any() or m[:, :, 0].any() or m[:, :, -1].any())
    assert subject.partial_ids == (19,)  # the full sacrum is in view by default


@pytest.mark.parametrize("overrides, top", [({"include_t12": False}, 20), ({"cut_vertebra": 21}, 21)])
def test_cut_vertebra_option(overrides, top):
    s = generate_subject(2, PhantomConfig.tiny(**overrides))
    assert s.vertebra_ids[0] == top and s.partial_ids[0] == top
    assert all(v not in s.vertebra_ids for v in range(19, top))
    bottom_discs = [L.SPINEPS_DISC_OFFSET + v for v in range(top, 25)]
    assert set(bottom_discs) <= set(np.unique(s.vert_mask).tolist())


def test_nine_subregions_in_every_fully_visible_vertebra(subject, tiny):
    for s in (subject, tiny):
        bones = s.bone_ids()
        full = [v for v in s.vertebra_ids if v not in s.partial_ids and v != 26]
        assert len(full) >= 5
        for v in full:
            present = set(np.unique(s.spine_mask[bones == v]).tolist())
            assert set(L.VERTEBRA_SUBREGIONS) <= present, (v, sorted(present))


def test_left_processes_lie_left_in_world(subject):
    bones = subject.bone_ids()
    for v in (20, 21, 22, 23, 24):
        for left, right in L.LEFT_RIGHT_PAIRS:
            x_left = centroid_world(subject.geometry, (bones == v) & (subject.spine_mask == left))[0]
            x_right = centroid_world(subject.geometry, (bones == v) & (subject.spine_mask == right))[0]
            assert x_left > x_right + 10.0, (v, left, x_left, x_right)  # LPS: +x is the patient's left


def test_canal_behind_bodies_and_cord_ends_at_l1_l2(subject):
    g = subject.geometry
    canal = np.isin(subject.spine_mask, (L.SPINAL_CANAL, L.SPINAL_CORD))
    rows_world_z = g.index_to_world(np.stack([np.zeros(subject.shape[1]), np.arange(subject.shape[1]),
                                              np.zeros(subject.shape[1])], axis=1))[:, 2]
    for v in (20, 21, 22, 23, 24):
        body = (subject.vert_mask == v) & (subject.spine_mask == L.VERTEBRAL_BODY)
        centre = centroid_world(g, body)
        rows = np.abs(rows_world_z - centre[2]) < 4.0
        canal_here = canal.copy()
        canal_here[:, ~rows] = False
        assert centroid_world(g, canal_here)[1] > centre[1] + 15.0  # LPS: +y is posterior
    cord = np.argwhere(subject.spine_mask == L.SPINAL_CORD)
    conus_z = g.index_to_world(cord[np.argmax(cord[:, 1])])[2]
    l2_z = centroid_world(g, subject.vert_mask == 21)[2]
    l1_top_z = centroid_world(g, subject.vert_mask == 219)[2]
    assert l2_z < conus_z < l1_top_z


def test_disc_heights_and_lordosis(subject):
    """Mid-sagittal disc thickness (area / length) 5–16 mm; angle between the L1/L2 and L5/S1
    disc planes 15–60 degrees; the drawn L1–S1 lordosis 35–70 degrees."""
    k = mid_slice(subject)
    spacing = np.asarray(subject.geometry.spacing_zyx[1:])
    normals = {}
    for x in (20, 21, 22, 23, 24):
        pts = np.argwhere(subject.vert_mask[k] == L.SPINEPS_DISC_OFFSET + x) * spacing
        centred = pts - pts.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        length = np.ptp(centred @ vt[0])
        thickness = len(pts) * spacing.prod() / length
        assert 5.0 <= thickness <= 16.0, (x, thickness)
        normals[x] = vt[1]
    angle = np.degrees(np.arccos(abs(normals[20] @ normals[24])))
    assert 15.0 <= angle <= 60.0, angle
    assert 35.0 <= subject.anatomy.lordosis_deg <= 70.0


def test_t2_and_t1_contrast(subject):
    """Median T2 signal: CSF > disc nucleus > vertebral marrow; on T1 marrow > CSF."""
    g, k = subject.geometry, mid_slice(subject)
    spacing = np.asarray(g.spacing_zyx[1:])

    def core(mask2d, radius_mm):
        pts = np.argwhere(mask2d)
        centre = pts.mean(axis=0)
        near = np.linalg.norm((pts - centre) * spacing, axis=1) < radius_mm
        return tuple(pts[near].T)

    csf = subject.spine_mask[k] == L.SPINAL_CANAL
    csf[: int(np.argwhere(subject.spine_mask[k] == L.SPINAL_CORD)[:, 0].max()) + 5] = False  # below the conus
    for seq, brighter in (("t2", True), ("t1", False)):
        image = subject.images[seq][k]
        csf_signal = np.median(image[csf])
        nucleus = np.median([np.median(image[core(subject.vert_mask[k] == 100 + x, 3.0)]) for x in range(20, 25)])
        marrow = np.median([np.median(image[core((subject.vert_mask[k] == x) & (subject.spine_mask[k] == 49), 5.0)])
                            for x in range(20, 25)])
        if brighter:
            assert csf_signal > 1.1 * nucleus and nucleus > 1.2 * marrow, (csf_signal, nucleus, marrow)
        else:
            assert marrow > 2.0 * csf_signal, (marrow, csf_signal)


def test_partial_volume_from_thick_slices():
    """Each thick slice averages sub-slices across its thickness: without noise and bias, the
    canal's outermost labelled slice is clearly darker on T2 than with point sampling, while the
    labels (sampled at slice centres) do not change."""
    ratios = {}
    for supersample in (1, 3):
        s = generate_subject(5, PhantomConfig.tiny(noise=0.0, bias=0.0, supersample=supersample))
        canal = s.spine_mask == L.SPINAL_CANAL
        slices = [k for k in range(s.shape[0]) if canal[k].any()]
        median = {k: np.median(s.images["t2"][k][canal[k]]) for k in slices}
        ratios[supersample] = min(median[slices[0]], median[slices[-1]]) / max(median.values())
        if supersample == 1:
            labels_point = s.vert_mask
    np.testing.assert_array_equal(s.vert_mask, labels_point)
    assert ratios[1] > 0.9 and ratios[3] < 0.85, ratios


def test_spider_files(tmp_path, tiny):
    overview = write_spider(tmp_path, [(7, tiny), (8, tiny)], sequences=("t1", "t2", "t2_SPACE"),
                            validation_pids=[8])
    with open(overview) as f:
        rows = list(csv.DictReader(f))
    assert [(r["new_file_name"], r["subset"]) for r in rows] == [
        ("7_t1", "training"), ("7_t2", "training"), ("7_t2_SPACE", "training"),
        ("8_t1", "validation"), ("8_t2", "validation"), ("8_t2_SPACE", "validation")]
    expected = tiny.spider_mask()
    for seq in ("t1", "t2"):
        image = sitk.ReadImage(str(tmp_path / "images" / f"7_{seq}.mha"))
        mask = sitk.ReadImage(str(tmp_path / "masks" / f"7_{seq}.mha"))
        assert Geometry.from_sitk(mask).orientation == SPIDER_ORIENTATION != "PIR"
        back = reorient(mask)
        geometry = Geometry.from_sitk(back)
        np.testing.assert_allclose(geometry.spacing_zyx, tiny.geometry.spacing_zyx, rtol=1e-6)
        np.testing.assert_allclose(geometry.direction, tiny.geometry.direction, atol=1e-9)
        np.testing.assert_allclose(geometry.origin_xyz, tiny.geometry.origin_xyz, atol=1e-4)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(back), expected)
        np.testing.assert_allclose(sitk.GetArrayFromImage(reorient(image)), tiny.images[seq])
    # Bottom-up numbering: level 1 (L5) lowest in world z, discs 200+k directly below vertebra k.
    spider, g = expected, tiny.geometry
    assert set(np.unique(spider).tolist()) == {0, 1, 2, 3, 4, 5, 100, 106, 201, 202, 203, 204, 205, 206}
    z = {v: centroid_world(g, spider == v)[2] for v in np.unique(spider) if v}
    assert z[1] < z[2] < z[3] < z[4] < z[5] < z[106]
    for level in (1, 2, 3, 4, 5):
        below = z[level - 1] if level > 1 else -np.inf
        assert below < z[200 + level] < z[level]
    assert not np.any(spider[tiny.spine_mask == L.SACRUM])  # sacrum unlabelled
    # t2_SPACE: another, near-isotropic grid with the same anatomy.
    space, sg = read_image(tmp_path / "masks" / "7_t2_SPACE.mha")
    assert max(sg.spacing_zyx) <= 1.5
    for value in (1, 5, 100, 203):
        assert np.linalg.norm(centroid_world(sg, space == value) - centroid_world(g, spider == value)) < 4.0


def test_spineps_files(tmp_path, subject):
    write_spineps(tmp_path, [("p01", subject)])
    for suffix, array in (("T2w", subject.images["t2"]), ("seg-spine_msk", subject.spine_mask),
                          ("seg-vert_msk", subject.vert_mask)):
        data, geometry = read_image(tmp_path / f"sub-p01_{suffix}.nii.gz")
        assert geometry.orientation == "PIR"
        np.testing.assert_allclose(geometry.spacing_zyx, subject.geometry.spacing_zyx, rtol=1e-5)
        np.testing.assert_allclose(geometry.origin_xyz, subject.geometry.origin_xyz, atol=1e-3)
        np.testing.assert_allclose(data, array, rtol=1e-6)
        l1 = subject.geometry.index_to_world(np.argwhere(subject.vert_mask == 20).mean(axis=0))
        l5 = geometry.index_to_world(np.argwhere(subject.vert_mask == 24).mean(axis=0))
        assert l1[2] > l5[2] + 100.0
    with pytest.raises(ValueError, match="BIDS"):
        write_spineps(tmp_path, [("bad_id", subject)])


def test_ssmspine_sample_and_writer(tmp_path):
    sample = generate_ssmspine_sample(0, 0, 0)
    shapes = {"img": (512, 512), "img_corrected": (512, 512), "img_equalized": (512, 512), "label": (1, 512, 512),
              "mask": (11, 512, 512), "shape": (1696, 2), "bone": (6, 236, 2), "bone_mask": (6, 512, 512),
              "disk": (5, 176, 2), "disk_mask": (5, 512, 512)}
    assert {k: v.shape for k, v in sample.items()} == shapes
    assert 0.0 <= sample["img"].min() and sample["img"].max() <= 1.0
    label = sample["label"][0]
    assert set(np.unique(label).tolist()) == set(range(12))
    np.testing.assert_array_equal(sample["mask"], np.stack([label == k for k in range(1, 12)]))
    np.testing.assert_array_equal(sample["bone_mask"], sample["mask"][:6])
    rows = [np.argwhere(label == k)[:, 0].mean() for k in range(1, 12)]
    assert rows[:6] == sorted(rows[:6])  # L1 above ... above S1
    assert all(rows[k] < rows[6 + k] < rows[k + 1] for k in range(5))  # disc k+7 between bones k+1, k+2
    for contours, first in ((sample["bone"], 1), (sample["disk"], 7)):
        for k, points in enumerate(contours):
            region = label == first + k
            cols, rws = np.round(points[:, 0]).astype(int), np.round(points[:, 1]).astype(int)
            near = np.zeros_like(region)
            near[rws, cols] = True
            assert (region & near).sum() / len(points) > 0.3 and np.all(np.abs(points[:, 1] - np.argwhere(region)[:, 0].mean()) < 60)
            assert np.argmin(points.sum(axis=1)) == 0  # starts anterior-superior ...
            assert points[4, 0] > points[0, 0]  # ... and runs posterior along the upper edge first
    np.testing.assert_array_equal(sample["shape"][:6 * 236], sample["bone"].reshape(-1, 2))

    assert not np.array_equal(generate_ssmspine_sample(0, 0, 1)["label"], label[None])  # augs vary the shape

    write_ssmspine(tmp_path, 5, augs=1, seed=1)
    assert sorted(p.name for p in (tmp_path / "Train").iterdir()) == ["p0", "p1", "p2", "p3"]
    assert sorted(p.name for p in (tmp_path / "Test").iterdir()) == ["p4"]
    loaded = torch.load(tmp_path / "Test" / "p4" / "aug0.pt")
    assert {k: tuple(v.shape) for k, v in loaded.items()} == shapes
    assert loaded["label"].dtype == torch.int64 and loaded["img"].dtype == torch.float32

    assert [s for _, s in ssmspine_split(6, n_test=4)] == ["Train"] * 2 + ["Test"] * 4
    with pytest.raises(ValueError, match="n_test"):
        ssmspine_split(3, n_test=4)


def test_cli_writes_each_format(tmp_path):
    from nnunetv2_symtc.cli import main

    assert main(["phantom", "-o", str(tmp_path / "spider"), "--format", "spider", "-n", "2", "--tiny",
                 "--sequences", "t1", "t2"]) == 0
    with open(tmp_path / "spider" / "overview.csv") as f:
        subsets = [r["subset"] for r in csv.DictReader(f)]
    assert subsets == ["training", "training", "validation", "validation"]
    assert main(["phantom", "-o", str(tmp_path / "spineps"), "--format", "spineps", "-n", "1", "--tiny"]) == 0
    assert len(list((tmp_path / "spineps").glob("sub-*_seg-vert_msk.nii.gz"))) == 1
    assert main(["phantom", "-o", str(tmp_path / "x"), "--format", "spineps", "-n", "0"]) == 1


# Recorded with the code before the transitional-vertebra option (commit 603a883): new options keep
# the default subjects bit-identical (masks exactly, images by their sums).
_DEFAULT_FINGERPRINTS = {
    "tiny": (5, "42817144ead32dece573", (12, 80, 60), {"t1": 23943899.237903595, "t2": 18689482.387250185}),
    "demo-cpu": (0, "155e878383738f730ae8", (12, 120, 90), {"t1": 47737327.32524812, "t2": 46432770.97168827}),
}


@pytest.mark.parametrize("name", sorted(_DEFAULT_FINGERPRINTS))
def test_default_subjects_are_unchanged(name):
    import hashlib

    from nnunetv2_symtc.demo import BUDGETS

    seed, digest, shape, sums = _DEFAULT_FINGERPRINTS[name]
    s = generate_subject(seed, PhantomConfig.tiny() if name == "tiny" else BUDGETS["cpu"].phantom)
    masks = hashlib.sha256()
    for array in (s.spine_mask, s.vert_mask, s.spider_mask()):
        masks.update(np.ascontiguousarray(array).tobytes())
    assert s.shape == shape and masks.hexdigest()[:20] == digest
    for sequence, total in sums.items():
        assert float(s.images[sequence].astype(np.float64).sum()) == pytest.approx(total, rel=1e-6)
