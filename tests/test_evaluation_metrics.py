"""Metrics against analytic cases, medpy (oracle) and hand-computed instance / SPIDER cases."""
import math
import os

import numpy as np
import pytest
from medpy.metric import binary as medpy_binary
from scipy.ndimage import gaussian_filter

from nnunetv2_symtc.evaluation import metrics as M


def blobs(shape, seed, count=4, sigma=2.5):
    """A label map with ``count`` smooth random structures (some touch the array border)."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, dtype=np.uint8)
    for value in range(1, count + 1):
        field = gaussian_filter(rng.random(shape), sigma)
        labels[field > np.quantile(field, 0.9)] = value
    return labels


# --------------------------------------------------------------------------------------------
# analytic cases
# --------------------------------------------------------------------------------------------
def test_single_voxels_give_euclidean_distance_with_anisotropic_spacing():
    a = np.zeros((5, 6, 7), bool)
    b = np.zeros_like(a)
    a[0, 0, 0] = True
    b[1, 2, 3] = True
    spacing = (3.0, 0.5, 0.7)
    expected = math.sqrt(3.0 ** 2 + 1.0 ** 2 + 2.1 ** 2)
    assert M.hd95(a, b, spacing) == pytest.approx(expected, abs=1e-12)
    assert M.assd(a, b, spacing) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("axis,spacing", [(0, (3.3, 0.5, 0.5)), (2, (3.3, 0.6, 0.45))])
def test_parallel_plates_shifted_along_each_axis(axis, spacing):
    """Plates one voxel thick, 3 voxels apart: every boundary voxel is 3 x spacing[axis] from the other."""
    a = np.zeros((12, 12, 12), bool)
    index = [slice(2, 10)] * 3
    index[axis] = 2
    a[tuple(index)] = True
    b = np.roll(a, 3, axis=axis)
    assert M.hd95(a, b, spacing) == pytest.approx(3 * spacing[axis], abs=1e-12)
    for definition in M.ASSD_DEFINITIONS:
        assert M.assd(a, b, spacing, definition) == pytest.approx(3 * spacing[axis], abs=1e-12)
    metrics = M.case_metrics(a.astype(np.uint8), b.astype(np.uint8), spacing)["1"]
    assert metrics["Dice"] == 0 and metrics["missed"] == 0
    assert metrics["volume_ref_mm3"] == pytest.approx(64 * np.prod(spacing))


def test_concentric_spheres_distance_is_radius_difference():
    grid = np.indices((41, 41, 41)) - 20
    radius = np.sqrt((grid ** 2).sum(0))
    spacing = (0.8, 0.8, 0.8)
    inner, outer = radius <= 8, radius <= 13
    # rasterised spheres: boundary distances lie within one voxel of the 5-voxel radius difference
    assert M.hd95(outer, inner, spacing) == pytest.approx(5 * 0.8, abs=0.8)
    assert M.assd(outer, inner, spacing) == pytest.approx(5 * 0.8, abs=0.5)
    assert M.dice(inner, outer) == pytest.approx(2 * inner.sum() / (inner.sum() + outer.sum()))


def test_empty_masks_are_missed_never_zero():
    ref = np.zeros((4, 8, 8), np.uint8)
    ref[1:3, 2:6, 2:6] = 1
    pred = np.zeros_like(ref)
    pred[1:3, 2:6, 2:6] = 2
    result = M.case_metrics(ref, pred, (2.0, 1.0, 1.0), structures={"1": (1,), "2": (2,), "3": (3,)},
                            symtc_compat=True)
    for key in ("1", "2"):
        assert math.isnan(result[key]["HD95"]) and math.isnan(result[key]["ASSD"])
        assert result[key]["missed"] == 1 and result[key]["Dice"] == 0
        assert result[key]["HD95_symtc_px"] == 0 and result[key]["Dice_symtc"] == 0
    assert math.isnan(result["3"]["Dice"]) and result["3"]["missed"] == 0
    assert result["3"]["Dice_symtc"] == 1 and result["3"]["TN"] == ref.size
    assert math.isnan(M.hd95(ref == 1, pred == 1)) and math.isnan(M.dice(ref == 9, pred == 9))


def test_ignore_label_is_left_out_of_counts():
    ref = np.zeros((1, 10, 10), np.uint8)
    pred = np.zeros_like(ref)
    ref[0, :5, :5] = 1
    ref[0, 5:, 5:] = 3  # ignore
    pred[0, :5, :] = 1  # 25 true positives, 25 false positives
    pred[0, 5:, 5:] = 1  # on the ignore region: not counted
    result = M.case_metrics(ref, pred, (1.0, 1.0, 1.0), structures={"1": (1,)}, ignore_label=3)["1"]
    assert (result["TP"], result["FP"], result["FN"]) == (25, 25, 0)
    assert result["TN"] == 100 - 25 - 25 - 25


# --------------------------------------------------------------------------------------------
# medpy as oracle
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape,spacing", [((18, 40, 36), (3.3, 0.55, 0.6)), ((48, 44), (0.7, 1.3))])
def test_case_metrics_equal_medpy(shape, spacing):
    ref = blobs(shape, 0)
    pred = blobs(shape, 1)
    pred[ref == 2] = 2  # one structure with a large overlap
    result = M.case_metrics(ref, pred, spacing)
    assert set(result) == {"1", "2", "3", "4"}
    for key, m in result.items():
        r, p = ref == int(key), pred == int(key)
        assert m["HD95"] == pytest.approx(medpy_binary.hd95(p, r, voxelspacing=spacing), abs=1e-9)
        assert m["ASSD"] == pytest.approx(medpy_binary.assd(p, r, voxelspacing=spacing), abs=1e-9)
        assert m["Dice"] == pytest.approx(medpy_binary.dc(p, r), abs=1e-12)
    directed = M.case_metrics(ref, pred, spacing, assd_definition="mean_of_directed_means")
    for key, m in directed.items():
        r, p = ref == int(key), pred == int(key)
        expected = (medpy_binary.asd(p, r, spacing) + medpy_binary.asd(r, p, spacing)) / 2
        assert m["ASSD"] == pytest.approx(expected, abs=1e-9)


def test_symtc_compat_hd95_is_in_voxels():
    ref, pred = blobs((10, 30, 30), 2, count=1), blobs((10, 30, 30), 3, count=1)
    m = M.case_metrics(ref, pred, (4.0, 0.5, 0.5), symtc_compat=True)["1"]
    assert m["HD95_symtc_px"] == pytest.approx(medpy_binary.hd95(pred == 1, ref == 1), abs=1e-9)
    assert m["HD95"] != pytest.approx(m["HD95_symtc_px"])
    with pytest.raises(ValueError, match="SymTC-compat"):
        M.case_metrics(ref, pred, (4.0, 0.5, 0.5), symtc_compat=True, distances=False)


def tptbox_vertebra_mask():
    TPTBox = pytest.importorskip("TPTBox")
    from nnunetv2_symtc.io import read_image

    path = os.path.join(os.path.dirname(TPTBox.__file__), "tests", "sample_mri", "sub-mri_seg-vert_label-6_msk.nii.gz")
    if not os.path.isfile(path):
        pytest.skip(f"TPTBox sample mask not found at {path}")
    return read_image(path)


def perturb(instance_mask: np.ndarray) -> np.ndarray:
    """Shift by one voxel along axis 1, erode one structure's edge, drop one and relabel another."""
    values = [int(v) for v in np.unique(instance_mask) if v]
    out = np.roll(instance_mask, 1, axis=1)
    out[(out == values[1]) & (np.roll(out, 2, axis=2) != values[1])] = 0
    out[out == values[-1]] = 0
    out[out == values[0]] = 250
    return out


def test_real_tptbox_masks_against_medpy_and_instances():
    reference, geometry = tptbox_vertebra_mask()
    spacing = geometry.spacing_zyx
    prediction = perturb(reference)
    result = M.case_metrics(reference, prediction, spacing)
    values = [int(v) for v in np.unique(reference) if v]
    assert set(result) == {str(v) for v in values + [250]}
    for key, m in result.items():
        r, p = reference == int(key), prediction == int(key)
        assert m["n_ref"] == r.sum() and m["n_pred"] == p.sum()
        if r.any() and p.any():
            assert m["HD95"] == pytest.approx(medpy_binary.hd95(p, r, voxelspacing=spacing), abs=1e-6)
            assert m["ASSD"] == pytest.approx(medpy_binary.assd(p, r, voxelspacing=spacing), abs=1e-6)
        else:
            assert m["missed"] == 1 and math.isnan(m["HD95"])
    summary, rows = M.instance_metrics(reference, prediction)
    # brute-force oracle: IoU of every (reference, prediction) value pair from boolean masks
    pred_values = [int(v) for v in np.unique(prediction) if v]
    matches = set()
    for r in values:
        for p in pred_values:
            a, b = reference == r, prediction == p
            if (a & b).sum() / (a | b).sum() > 0.5:
                matches.add((r, p))
    assert (values[0], 250) in matches and len(matches) >= 3  # relabelled structure still matched
    assert {(m.reference, m.prediction) for m in rows if m.reference and m.prediction} == matches
    assert summary["tp"] == len(matches)
    assert summary["fn"] == len(values) - len(matches) and summary["fp"] == len(pred_values) - len(matches)


# --------------------------------------------------------------------------------------------
# instances: hand-computed panoptic quality
# --------------------------------------------------------------------------------------------
def test_panoptic_quality_hand_computed():
    ref = np.zeros((1, 80), np.uint16)
    pred = np.zeros_like(ref)
    ref[0, 0:10] = 1
    pred[0, 0:8] = 7            # IoU 8/10, Dice 16/18 -> match
    ref[0, 20:30] = 2
    pred[0, 24:34] = 8          # IoU 6/14 -> no match: fn (2) and fp (8)
    ref[0, 40:45] = 3           # missed: fn
    pred[0, 50:53] = 9          # spurious: fp
    ref[0, 60:63] = ref[0, 70:73] = 4    # two pieces, one instance
    pred[0, 60:63] = pred[0, 70:73] = 11
    summary, rows = M.instance_metrics(ref, pred)
    assert (summary["tp"], summary["fp"], summary["fn"]) == (2, 2, 2)
    assert summary["rq"] == pytest.approx(2 / (2 + 1 + 1))
    assert summary["sq"] == pytest.approx((0.8 + 1.0) / 2)
    assert summary["pq"] == pytest.approx(0.9 * 0.5)
    assert summary["sq_dsc"] == pytest.approx((16 / 18 + 1.0) / 2)
    assert summary["pq_dsc"] == pytest.approx((16 / 18 + 1.0) / 4)
    assert summary["detection_rate"] == pytest.approx(0.5)
    assert summary["mean_instance_dice"] == pytest.approx((16 / 18 + 0 + 0 + 1) / 4)
    assert {(r.reference, r.prediction) for r in rows} == {(1, 7), (4, 11), (2, None), (3, None), (None, 8), (None, 9)}


def test_panoptic_quality_edge_cases():
    empty = np.zeros((3, 3), np.uint8)
    summary, _ = M.instance_metrics(empty, empty)
    assert math.isnan(summary["pq"]) and math.isnan(summary["detection_rate"])
    one = empty.copy()
    one[0, 0] = 1
    summary, _ = M.instance_metrics(one, empty)
    assert summary["pq"] == 0 and summary["rq"] == 0 and summary["fn"] == 1
    with pytest.raises(ValueError, match="one-to-one"):
        M.instance_metrics(one, one, iou_threshold=0.3)


# --------------------------------------------------------------------------------------------
# SPIDER challenge rules
# --------------------------------------------------------------------------------------------
def spider_case():
    ref = np.zeros((6, 40, 20), np.uint16)
    ref[1:5, 2:10, 2:12] = 1         # vertebra, well predicted
    ref[1:5, 14:22, 2:12] = 2        # vertebra, barely touched: missed (Dice < 0.1)
    ref[1:5, 11:13, 2:12] = 201      # disc
    ref[1:5, 25:30, 2:12] = 103      # partial vertebra: only in the overall scores
    ref[2:4, 2:38, 14:17] = 100      # canal
    pred = np.zeros_like(ref)
    pred[1:5, 3:10, 2:12] = 5        # ids need not match
    pred[1, 14, 2:4] = 6             # 2 voxels of 320 -> Dice < 0.1
    pred[1:5, 11:13, 2:12] = 9
    pred[1:5, 25:29, 2:12] = 7
    pred[2:4, 2:38, 14:17] = 100
    return ref, pred


def test_spider_scores_follow_the_official_rules():
    ref, pred = spider_case()
    spacing = (3.0, 0.5, 0.7)
    scores, per_label = M.spider_case_scores(ref, pred, spacing)
    dice_1 = 2 * 4 * 7 * 10 / (4 * 8 * 10 + 4 * 7 * 10)
    dice_2 = 2 * 2 / (4 * 8 * 10 + 2)
    dice_103 = 2 * 4 * 4 * 10 / (4 * 5 * 10 + 4 * 4 * 10)
    assert per_label[1]["matched_prediction"] == 5 and per_label[2]["detected"] == 0
    assert scores["DiceScoreVertebrae"] == pytest.approx(dice_1)
    assert scores["DetectionRateVertebrae"] == pytest.approx(0.5)
    assert scores["DiceScoreDiscs"] == pytest.approx(1.0) and scores["DetectionRateDiscs"] == 1.0
    assert scores["DiceScoreSpinalCanal"] == pytest.approx(1.0)
    assert scores["OveralDiceScore"] == pytest.approx((dice_1 + dice_2 + 1 + dice_103 + 1) / 5)
    # ASD: pooled mean, full connectivity, the script's (x, y, z) spacing on (z, y, x) arrays
    official = tuple(reversed(spacing))
    asd_1 = medpy_binary.assd(pred == 5, ref == 1, voxelspacing=official, connectivity=3)
    asd_2 = medpy_binary.assd(pred == 6, ref == 2, voxelspacing=official, connectivity=3)
    assert per_label[1]["ASD"] == pytest.approx(asd_1, abs=1e-9)
    assert scores["ASDVertebrae"] == pytest.approx((asd_1 + asd_2) / 2, abs=1e-9)
    corrected, _ = M.spider_case_scores(ref, pred, spacing, official_spacing=False)
    assert corrected["ASDVertebrae"] == pytest.approx(
        (medpy_binary.assd(pred == 5, ref == 1, spacing, 3) + medpy_binary.assd(pred == 6, ref == 2, spacing, 3)) / 2)


def test_spider_missing_canal_and_unmatched_label():
    ref, pred = spider_case()
    ref[ref == 100] = 0
    pred[pred == 7] = 0               # partial vertebra 103 without any overlap: Dice 0, ASD NaN
    scores, per_label = M.spider_case_scores(ref, pred, (1.0, 1.0, 1.0))
    assert scores["DiceScoreSpinalCanal"] == M.SPIDER_MISSING_CANAL
    assert per_label[103]["Dice"] == 0 and math.isnan(per_label[103]["ASD"])
    assert math.isnan(scores["OveralASD"]) and not math.isnan(scores["ASDVertebrae"])
    aggregate = M.spider_aggregate([scores, {**scores, "DiceScoreVertebrae": 0.5}])
    assert aggregate["DiceScoreVertebrae"]["std"] == pytest.approx(np.std([scores["DiceScoreVertebrae"], 0.5], ddof=1))
    assert math.isnan(aggregate["OveralASD"]["mean"])
