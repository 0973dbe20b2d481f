"""Statistical-shape-model augmentation: landmarks, shape model, TPS warp, dataset expansion.

The core is tested on spines drawn here (superellipse vertebrae and discs stacked with lordosis,
SSMSpine classes); the dataset tests write a small 2D nnU-Net raw dataset of them.
"""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_symtc.augmentation.landmarks import (SpineLayout, canonical_contour, canonical_shape,
                                                   extract_landmarks, load_stored_landmarks, polygon_centroid,
                                                   save_landmarks, spine_layout)
from nnunetv2_symtc.augmentation.shape_model import ShapeModel, shape_problem
from nnunetv2_symtc.augmentation.ssm import (LANDMARKS_FOLDER, MODELS_FILE, SSMAugmentConfig, sample_warp,
                                             ssm_augment_dataset)
from nnunetv2_symtc.augmentation.warp import ThinPlateSpline, backward_map, warp_image, warp_labels
from nnunetv2_symtc.dataset_conversion.writer import direction_for
from nnunetv2_symtc.io import CANONICAL_ORIENTATION, Geometry, write_image
from nnunetv2_symtc.labels import spider_levels_map, ssmspine_map

LABELS = ssmspine_map().dataset_json_labels()
LAYOUT = spine_layout(LABELS)
HEIGHT, WIDTH = 176, 128


def synthetic_spine(seed: int, height: int = HEIGHT, width: int = WIDTH):
    """(image (H, W) float32, label (H, W) uint8): six vertebrae and five discs (SSMSpine classes)
    stacked top to bottom along a lordotic curve; sizes, curvature and tilt vary with ``seed``."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width].astype(float)
    vertebra_half_height = rng.uniform(8, 10, 6)
    disc_half_height = rng.uniform(2.5, 4.0, 5)
    half_depth, lordosis, tilt = rng.uniform(13, 16), rng.uniform(6, 14), rng.uniform(-0.1, 0.1)
    label = np.zeros((height, width), np.uint8)
    top = 14.0 + rng.uniform(-3, 3)
    for i in range(11):
        vertebra = i % 2 == 0
        half_height = vertebra_half_height[i // 2] if vertebra else disc_half_height[i // 2]
        cy = top + half_height
        t = (cy - 14) / 130
        cx = width / 2 + lordosis * np.sin(np.pi * t) + tilt * (cy - 80)
        angle = np.arctan(lordosis * np.pi / 130 * np.cos(np.pi * t) + tilt)
        u = (cols - cx) * np.cos(angle) - (rows - cy) * np.sin(angle)
        v = (cols - cx) * np.sin(angle) + (rows - cy) * np.cos(angle)
        inside = (np.abs(u / half_depth) ** 4 + np.abs(v / half_height) ** 4) <= 1
        label[inside & (label == 0)] = (i // 2 + 1) if vertebra else (i // 2 + 7)
        top = cy + half_height
    image = 0.2 + 0.05 * np.sin(rows / 9) * np.cos(cols / 13)
    image = image + np.where((label >= 1) & (label <= 6), 0.4, 0) + np.where(label >= 7, 0.7, 0)
    image = image + rng.normal(0, 0.02, image.shape)
    return image.astype(np.float32), label


@pytest.fixture(scope="module")
def spines():
    cases = [synthetic_spine(seed) for seed in range(10)]
    shapes = np.stack([extract_landmarks(label, LAYOUT) for _, label in cases])
    return cases, shapes


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


def structure_centroids(label: np.ndarray, layout: SpineLayout) -> np.ndarray:
    """(row, col) centroid of every modelled structure's pixels; NaN if absent."""
    out = []
    for s in layout.structures:
        rows, cols = np.nonzero(label == s.class_id)
        out.append((rows.mean(), cols.mean()) if len(rows) else (np.nan, np.nan))
    return np.array(out)


# --------------------------------------------------------------------------------------------
# landmarks
# --------------------------------------------------------------------------------------------
def test_layout_orders_structures_by_level_not_by_class_number():
    shuffled = {"background": 0, "L5/S1": 1, "S1": 2, "L1": 3, "L2 vertebra": 4, "L1-L2 disc": 5, "canal": 6}
    layout = spine_layout(shuffled)
    assert [s.name for s in layout.vertebrae] == ["L1", "L2", "S1"]
    assert [s.class_id for s in layout.vertebrae] == [3, 4, 2]
    assert [s.class_id for s in layout.discs] == [5, 1]
    assert layout.disc_neighbours == ((0, 1), None)  # L5 is not a class, so L5/S1 has no upper neighbour
    assert [s.name for s in LAYOUT.vertebrae] == ["L1", "L2", "L3", "L4", "L5", "S1"]
    assert LAYOUT.disc_neighbours == tuple((i, i + 1) for i in range(5))
    with pytest.raises(ValueError, match="fewer than two vertebrae"):
        spine_layout({"background": 0, "disc": 1, "canal": 2})


def test_layout_of_spider_levels_scheme_counts_from_the_bottom():
    label_map = spider_levels_map(max_level=3)  # names vertebra_1.. carry no level tokens
    layout = spine_layout(label_map.dataset_json_labels(), label_map)
    source = {i: values[0] for i, (_, values) in enumerate(label_map.classes, start=1)}
    assert [source[s.class_id] for s in layout.vertebrae] == [3, 2, 1]  # SPIDER level 1 is the lowest
    assert [source[s.class_id] for s in layout.discs] == [203, 202, 201]
    assert layout.disc_neighbours == ((0, 1), (1, 2), None)  # disc 201 lies below vertebra 1 (unmodelled sacrum)


def test_canonical_contour_ignores_start_point_orientation_and_sampling():
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    polygon = np.stack([40 + 15 * np.cos(t), 30 + 8 * np.sin(t)], 1)
    reference = canonical_contour(polygon, 40)
    for variant in (np.roll(polygon, 77, 0), polygon[::-1], polygon[::3]):
        assert np.abs(canonical_contour(variant, 40) - reference).max() < 0.05
    start = reference[0] - (40, 30)
    assert start[0] < 0 and start[1] < 0  # anterior-superior quadrant
    # equal arc-length spacing
    steps = np.linalg.norm(np.diff(np.vstack([reference, reference[:1]]), axis=0), axis=1)
    assert steps.std() / steps.mean() < 0.05


def test_extract_landmarks_lie_on_boundaries_and_name_missing_structures(spines):
    (_, label), shape = spines[0][0], spines[1][0]
    for structure, contour in zip(LAYOUT.structures, LAYOUT.split(shape)):
        mask = label == structure.class_id
        rows, cols = np.rint(contour[:, 1]).astype(int), np.rint(contour[:, 0]).astype(int)
        inside = [mask[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2].any() for r, c in zip(rows, cols)]
        outside = [(~mask[max(r - 1, 0):r + 2, max(c - 1, 0):c + 2]).any() for r, c in zip(rows, cols)]
        assert all(inside) and all(outside), structure.name
    broken = label.copy()
    broken[broken == 9] = 0
    with pytest.raises(ValueError, match="L3/L4"):
        extract_landmarks(broken, LAYOUT)


def test_stored_landmarks_round_trip_and_wrong_frame_is_refused(spines, tmp_path):
    (_, label), shape = spines[0][0], spines[1][0]
    save_landmarks(tmp_path / "ok.npz", shape, LAYOUT)
    assert np.abs(load_stored_landmarks(tmp_path / "ok.npz", LAYOUT, label) - shape).max() < 0.5  # re-parameterised
    save_landmarks(tmp_path / "swapped.npz", shape[:, ::-1].copy(), LAYOUT)  # (row, column) by mistake
    with pytest.raises(ValueError, match="px from the label boundary"):
        load_stored_landmarks(tmp_path / "swapped.npz", LAYOUT, label)


# --------------------------------------------------------------------------------------------
# shape model
# --------------------------------------------------------------------------------------------
def test_procrustes_removes_pose_and_optionally_size(spines):
    shape = spines[1][0]
    rotation = np.array([[np.cos(0.3), -np.sin(0.3)], [np.sin(0.3), np.cos(0.3)]])
    moved = shape @ rotation.T + (5.0, -7.0)
    assert ShapeModel.fit(np.stack([shape, moved, shape]), ["a", "b", "c"]).num_modes == 0
    scaled = 1.3 * shape
    assert ShapeModel.fit(np.stack([shape, scaled, moved]), ["a", "b", "c"], with_scale=True).num_modes == 0
    assert ShapeModel.fit(np.stack([shape, scaled, moved]), ["a", "b", "c"], with_scale=False).num_modes == 1


@pytest.mark.parametrize("fraction", [0.5, 0.8, 0.95])
def test_model_keeps_requested_variance_and_is_reproducible(spines, fraction):
    shapes = spines[1]
    ids = [str(i) for i in range(len(shapes))]
    model = ShapeModel.fit(shapes, ids, fraction)
    again = ShapeModel.fit(shapes.copy(), ids, fraction)
    assert np.array_equal(model.mean, again.mean) and np.array_equal(model.modes, again.modes)
    _, singular, _ = np.linalg.svd((shapes - shapes.mean(0)).reshape(len(shapes), -1), full_matrices=False)
    full = ShapeModel.fit(shapes, ids, 1.0)
    cumulative = np.cumsum(full.variances) / full.variances.sum()
    assert model.explained >= fraction
    assert model.num_modes == 1 or cumulative[model.num_modes - 2] < fraction  # one mode fewer is not enough
    assert np.isclose(model.explained, cumulative[model.num_modes - 1])
    assert np.allclose(model.modes @ model.modes.T, np.eye(model.num_modes), atol=1e-9)
    a = [model.sample_coefficients(np.random.default_rng(3), 2.0) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    draws = np.concatenate([model.sample_coefficients(np.random.default_rng(s), 1.5) for s in range(50)])
    assert np.abs(draws).max() <= 1.5


def test_shape_problem_catches_implausible_shapes(spines):
    shape = spines[1][0]
    assert shape_problem(shape, LAYOUT, (HEIGHT, WIDTH)) is None
    parts = [p.copy() for p in LAYOUT.split(shape)]
    swapped = np.concatenate([parts[1], parts[0]] + parts[2:])  # L2 where L1 should be
    assert "order" in shape_problem(swapped, LAYOUT, (HEIGHT, WIDTH))
    crossed = [p.copy() for p in parts]
    crossed[2][[5, 20]] = crossed[2][[20, 5]]
    assert "L3 self-intersects" == shape_problem(np.concatenate(crossed), LAYOUT, (HEIGHT, WIDTH))
    overlapping = [p.copy() for p in parts]
    overlapping[7] = overlapping[7] - polygon_centroid(overlapping[7]) + polygon_centroid(overlapping[1])
    problem = shape_problem(np.concatenate(overlapping), LAYOUT, (HEIGHT, WIDTH))
    assert "overlap" in problem or "between" in problem
    outside = [p.copy() for p in parts]
    outside[6] = outside[6] + (0, 40)  # L1/L2 disc pushed below L2
    assert "between" in shape_problem(np.concatenate(outside), LAYOUT, (HEIGHT, WIDTH))
    assert shape_problem(shape + (0, HEIGHT), LAYOUT, (HEIGHT, WIDTH)) == "outside the image"


# --------------------------------------------------------------------------------------------
# warping
# --------------------------------------------------------------------------------------------
def test_tps_interpolates_and_reproduces_affine_maps():
    rng = np.random.default_rng(0)
    source = rng.uniform(0, 100, (30, 2))
    target = source + rng.normal(0, 3, source.shape)
    tps = ThinPlateSpline.fit(source, target, regularization=0.0)
    assert np.abs(tps(source) - target).max() < 1e-6
    affine = np.array([[1.1, 0.2], [-0.1, 0.9]])
    tps = ThinPlateSpline.fit(source, source @ affine.T + 4.0)
    query = rng.uniform(-50, 150, (200, 2))
    assert np.abs(tps(query) - (query @ affine.T + 4.0)).max() < 1e-6


def test_identity_warp_reproduces_image_and_labels(spines):
    (image, label), shape = spines[0][3], spines[1][3]
    coordinates, jacobian = backward_map(shape, shape, label.shape)
    assert abs(jacobian - 1.0) < 1e-6
    assert np.abs(warp_image(image, coordinates) - image).max() < 1e-4
    warped = warp_labels(label, coordinates)
    for s in LAYOUT.structures:
        assert dice(warped == s.class_id, label == s.class_id) >= 0.99


def test_coarse_grid_matches_exact_tps(spines):
    (_, label), shapes = spines[0][1], spines[1]
    model = ShapeModel.fit(shapes, [str(i) for i in range(len(shapes))], 0.95)
    target = model.placed_like(model.instance(np.full(model.num_modes, 1.0)), shapes[1])
    coarse, _ = backward_map(shapes[1], target, label.shape)
    exact, _ = backward_map(shapes[1], target, label.shape, exact=True)
    assert np.abs(coarse - exact).max() < 0.5
    assert np.abs(coarse - exact).mean() < 0.05


def test_warped_labels_follow_the_sampled_shape_and_keep_anatomy(spines):
    """Fidelity (re-extracted landmarks match the sampled shape) and topology of sampled warps."""
    cases, shapes = spines
    model = ShapeModel.fit(shapes[:8], [str(i) for i in range(8)], 0.95)
    rng = np.random.default_rng(1)
    errors = []
    for case in (0, 5, 8):  # two training cases and one the model never saw
        image, label = cases[case]
        for _ in range(3):
            channels, warped, target = sample_warp([image], label, shapes[case], model, LAYOUT, rng, 2.0)
            moved = np.linalg.norm(target - shapes[case], axis=1).mean()
            assert moved > 0.5  # a real change of shape, not the identity
            error = np.linalg.norm(extract_landmarks(warped, LAYOUT) - canonical_shape(target, LAYOUT), axis=1)
            errors.append(error.mean())
            centroids = structure_centroids(warped, LAYOUT)
            assert not np.isnan(centroids).any()  # every structure present
            assert np.all(np.diff(centroids[:6, 0]) > 0)  # L1 above L2 above ... S1
            for disc, (above, below) in enumerate(LAYOUT.disc_neighbours):
                assert centroids[above, 0] < centroids[6 + disc, 0] < centroids[below, 0]
            assert channels[0].dtype == image.dtype and channels[0].shape == image.shape
    assert max(errors) <= 1.5, errors
    # a plain elastic deformation of the same magnitude does not match the sampled shapes
    coordinates = np.mgrid[0:HEIGHT, 0:WIDTH].astype(float)
    coordinates[0] += 3 * np.sin(coordinates[1] / 11)
    elastic = warp_labels(cases[0][1], coordinates)
    target = model.placed_like(model.instance(np.full(model.num_modes, 1.5)), shapes[0])
    elastic_error = np.linalg.norm(extract_landmarks(elastic, LAYOUT) - canonical_shape(target, LAYOUT), axis=1)
    assert elastic_error.mean() > 1.5


def test_anatomy_beyond_the_column_ends_follows_the_end_vertebrae(spines):
    """An unmodelled vertebra above L1 (T12 in SSMSpine data) keeps its size relative to L1 when
    the sampled shape enlarges the lumbar column; before the fix it was squeezed between the moved
    L1 and the fixed image border, so L1 looked like the larger of the two on ~half the warps."""
    (image, label), shape = spines[0][2], spines[1][2]
    pad = 90
    label = np.pad(label, ((pad, 0), (0, 0)))
    l1, l2 = (np.argwhere(label == c).mean(0) for c in (1, 2))
    step = np.round(l1 - l2).astype(int)
    above = np.roll(label == 1, tuple(step), axis=(0, 1))  # a copy of L1 one level higher
    label[above & (label == 0)] = 12  # a class the layout does not model
    shape = shape + [0.0, pad]
    centre = shape.mean(0)
    target = centre + 1.2 * (shape - centre)  # the whole column 20 % larger

    def heights(column):
        warped = warp_labels(label, backward_map(shape, target, label.shape, LAYOUT.point_counts, column=column)[0])
        return [np.ptp(np.nonzero((warped == c).any(1))[0]) + 1 for c in (12, 1)]

    source_ratio = np.divide(*[np.ptp(np.nonzero((label == c).any(1))[0]) + 1 for c in (12, 1)])
    followed = np.divide(*heights(range(len(LAYOUT.vertebrae))))
    anchored = np.divide(*heights(None))
    assert abs(followed / source_ratio - 1) < 0.1, (followed, source_ratio)
    assert anchored / source_ratio < 0.85  # the old behaviour, for contrast


# --------------------------------------------------------------------------------------------
# dataset expansion
# --------------------------------------------------------------------------------------------
PATIENTS = ("pA", "pB", "pC", "pD")


def write_raw_dataset(raw: Path, dataset_id: int, with_landmarks: bool = False, three_d: bool = False) -> Path:
    """Four patients x two slices of drawn spines, SSMSpine labels, 2 folds grouped by patient, one test case."""
    folder = raw / f"Dataset{dataset_id:03d}_Drawn"
    geometry = Geometry((1.0, 1.0, 1.0), (0.0, 0.0, 0.0), direction_for(CANONICAL_ORIENTATION))
    cases = []
    for p, patient in enumerate(PATIENTS):
        for k in range(2):
            image, label = synthetic_spine(10 * p + k)
            case = f"{patient}_aug{k}"
            cases.append(case)
            reps = 3 if three_d else 1
            write_image(folder / "imagesTr" / f"{case}_0000.nii.gz", np.repeat(image[None], reps, 0), geometry)
            write_image(folder / "labelsTr" / f"{case}.nii.gz", np.repeat(label[None], reps, 0), geometry)
            if with_landmarks:
                save_landmarks(folder / LANDMARKS_FOLDER / f"{case}.npz", extract_landmarks(label, LAYOUT), LAYOUT)
    image, label = synthetic_spine(99)
    write_image(folder / "imagesTs" / "pZ_aug0_0000.nii.gz", image[None], geometry)
    write_image(folder / "labelsTs" / "pZ_aug0.nii.gz", label[None], geometry)
    first, second = [c for c in cases if c[:2] in ("pA", "pB")], [c for c in cases if c[:2] in ("pC", "pD")]
    splits = [{"train": second, "val": first}, {"train": first, "val": second}]
    (folder / "splits_final.json").write_text(json.dumps(splits))
    ssmspine_map().save(folder / "label_map.json")
    (folder / "dataset.json").write_text(json.dumps({
        "channel_names": {"0": "T2"}, "labels": LABELS, "numTraining": len(cases), "file_ending": ".nii.gz",
        "symtc_axes": {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}}))
    return folder


@pytest.fixture(scope="module")
def augmented(nnunet_dirs):
    raw = Path(os.environ["nnUNet_raw"])
    source = write_raw_dataset(raw, 861)
    target = ssm_augment_dataset(861, 862, SSMAugmentConfig(shapes=2, seed=5))
    return source, target


def test_augmented_dataset_counts_splits_and_models(augmented):
    source, target = augmented
    assert target.name == "Dataset862_DrawnSSM"
    dataset_json = json.loads((target / "dataset.json").read_text())
    source_splits = json.loads((source / "splits_final.json").read_text())
    splits = json.loads((target / "splits_final.json").read_text())
    models = json.loads((target / MODELS_FILE).read_text())["folds"]
    images = sorted(p.name for p in (target / "imagesTr").iterdir())
    # 8 originals + 2 shapes x 4 training cases x 2 folds
    assert dataset_json["numTraining"] == 8 + 2 * 4 * 2 == len(images)
    assert dataset_json["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    assert dataset_json["labels"] == LABELS
    assert (target / "label_map.json").read_text() == (source / "label_map.json").read_text()
    for fold, (split, original) in enumerate(zip(splits, source_splits)):
        assert split["val"] == original["val"]  # validation stays real and unchanged
        generated = sorted(set(split["train"]) - set(original["train"]))
        assert len(generated) == 8
        val_patients = {c.split("_")[0] for c in original["val"]}
        assert not any(c.split("_")[0] in val_patients for c in split["train"])  # grouping holds
        assert all(c.split("_")[0] not in val_patients for c in models[fold]["training_cases"])
        assert sorted(models[fold]["training_cases"]) == sorted(original["train"])
        assert models[fold]["explained_variance"] >= 0.95
        other = splits[1 - fold]
        assert not set(generated) & (set(other["train"]) | set(other["val"]))  # used by this fold only
    for case in [c for s in splits for c in s["train"]]:
        assert (target / LANDMARKS_FOLDER / f"{case}.npz").exists()
    assert (target / "imagesTs" / "pZ_aug0_0000.nii.gz").read_bytes() == \
        (source / "imagesTs" / "pZ_aug0_0000.nii.gz").read_bytes()
    assert (target / "labelsTs" / "pZ_aug0.nii.gz").exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".")]  # temp folder gone


def test_generated_cases_match_their_landmarks(augmented):
    from nnunetv2_symtc.io import read_image
    target = augmented[1]
    for name in ("pA_aug0_ssmf1s000", "pD_aug1_ssmf0s001"):
        label = read_image(target / "labelsTr" / f"{name}.nii.gz")[0][0]
        with np.load(target / LANDMARKS_FOLDER / f"{name}.npz") as data:
            stored = np.concatenate([data["bone"].reshape(-1, 2), data["disk"].reshape(-1, 2)])
        error = np.linalg.norm(extract_landmarks(label, LAYOUT) - canonical_shape(stored.astype(float), LAYOUT), axis=1)
        assert error.mean() <= 1.5


def test_run_is_reproducible_and_target_refused_without_overwrite(augmented):
    from nnunetv2_symtc.cli import main
    source, target = augmented
    before = np.load(target / LANDMARKS_FOLDER / "pB_aug1_ssmf1s001.npz")["bone"]
    assert main(["ssm-augment", "-d", "861", "-o", "862", "--shapes", "2", "--seed", "5"]) == 1
    assert main(["ssm-augment", "-d", "861", "-o", "862", "--shapes", "2", "--seed", "5", "--overwrite"]) == 0
    after = np.load(target / LANDMARKS_FOLDER / "pB_aug1_ssmf1s001.npz")["bone"]
    assert np.array_equal(before, after)  # same seed, same sampled shapes


def test_stored_landmarks_are_used(nnunet_dirs):
    raw = Path(os.environ["nnUNet_raw"])
    source = write_raw_dataset(raw, 863, with_landmarks=True)
    for path in (source / LANDMARKS_FOLDER).iterdir():  # store denser contours than extraction makes
        with np.load(path) as data:
            bone, disk = data["bone"], data["disk"]
        np.savez(path, bone=np.stack([canonical_contour(c, 100) for c in bone]),
                 disk=np.stack([canonical_contour(c, 60) for c in disk]))
    target = ssm_augment_dataset(863, 864, SSMAugmentConfig(shapes=1))
    layout = json.loads((target / MODELS_FILE).read_text())["layout"]
    assert (layout["points_per_vertebra"], layout["points_per_disc"]) == (100, 60)


def test_three_d_data_is_refused(nnunet_dirs):
    write_raw_dataset(Path(os.environ["nnUNet_raw"]), 865, three_d=True)
    with pytest.raises(ValueError, match="3D volumes are not supported"):
        ssm_augment_dataset(865, 866, SSMAugmentConfig(shapes=1))
    assert not list(Path(os.environ["nnUNet_raw"]).glob("Dataset866_*"))


# --------------------------------------------------------------------------------------------
# end to end: phantom (SSMSpine format) -> converter -> ssm-augment
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom_augmented(nnunet_dirs, tmp_path_factory):
    """Four phantom patients x one 512x512 slice (three train, one test; 3 folds), converted by the
    SSMSpine converter (stored landmarks), expanded with one shape per case and fold via the CLI."""
    from nnunetv2_symtc.cli import main
    from nnunetv2_symtc.dataset_conversion.ssmspine import convert_ssmspine
    from nnunetv2_symtc.phantom import write_ssmspine

    root = write_ssmspine(tmp_path_factory.mktemp("phantom_ssmspine"), 4, augs=1, seed=3)
    source = convert_ssmspine(root, 867)
    assert main(["ssm-augment", "-d", "867", "-o", "868", "--shapes", "1", "--seed", "1"]) == 0
    return Path(source), next(Path(os.environ["nnUNet_raw"]).glob("Dataset868_*"))


def test_phantom_run_passes_nnunet_integrity_check(phantom_augmented):
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity
    source, target = phantom_augmented
    verify_dataset_integrity(str(target), num_processes=1)
    splits = json.loads((source / "splits_final.json").read_text())
    dataset_json = json.loads((target / "dataset.json").read_text())
    assert dataset_json["numTraining"] == 3 + sum(len(s["train"]) for s in splits)


def test_phantom_warps_follow_stored_landmark_shapes(phantom_augmented):
    from nnunetv2_symtc.io import read_image
    source, target = phantom_augmented
    layout = LAYOUT.with_points(236, 176)  # the converter stores SSMSpine's contour sizes
    generated = sorted(p.name[:-len(".nii.gz")] for p in (target / "labelsTr").iterdir() if "_ssmf" in p.name)
    assert generated
    for name in generated:
        label = read_image(target / "labelsTr" / f"{name}.nii.gz")[0][0]
        with np.load(target / LANDMARKS_FOLDER / f"{name}.npz") as data:
            stored = np.concatenate([data["bone"].reshape(-1, 2), data["disk"].reshape(-1, 2)]).astype(float)
        error = np.linalg.norm(extract_landmarks(label, layout) - canonical_shape(stored, layout), axis=1)
        assert error.mean() <= 1.5, name
        centroids = structure_centroids(label, layout)
        assert not np.isnan(centroids).any() and np.all(np.diff(centroids[:6, 0]) > 0)
