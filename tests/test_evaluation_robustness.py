"""Robustness sweeps with deterministic Python predictors: shifting along anatomical axes, sweeps, plots."""
import csv

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_symtc.inference import robustness as R
from nnunetv2_symtc.io import Geometry, reorient


def geometry(orientation: str, spacing_xyz=(1.0, 2.0, 0.5)) -> Geometry:
    image = sitk.Image(8, 8, 8, sitk.sitkUInt8)
    image.SetSpacing(spacing_xyz)
    return Geometry.from_sitk(reorient(image, orientation))


WORLD_DIRECTION_LPS = {"superior": (0, 0, 1), "inferior": (0, 0, -1), "anterior": (0, -1, 0), "posterior": (0, 1, 0)}


@pytest.mark.parametrize("orientation", ["PIR", "LPS", "RAI"])
@pytest.mark.parametrize("direction", R.DIRECTIONS)
def test_shift_moves_content_towards_the_anatomical_direction(orientation, direction):
    geo = geometry(orientation)
    axis = geo.anatomical_axes()[R._AXIS_OF_DIRECTION[direction]]
    image = np.zeros((1, 12, 12, 12), np.float32)
    labels = np.zeros((12, 12, 12), np.uint8)
    image[0, 6, 6, 6] = 1.0
    labels[6, 6, 6] = 3
    shift_mm = 2 * geo.spacing_zyx[axis]  # two voxels, whatever the spacing
    shifted_image, shifted_labels = R.shift_case(image, labels, geo, direction, shift_mm)
    new_index = np.argwhere(shifted_labels == 3)
    assert len(new_index) == 1 and shifted_image[0][tuple(new_index[0])] == pytest.approx(1.0)
    moved_world = geo.index_to_world(new_index[0]) - geo.index_to_world((6, 6, 6))
    np.testing.assert_allclose(moved_world, shift_mm * np.array(WORLD_DIRECTION_LPS[direction]), atol=1e-9)


def phantom_case(case_id: str, seed: int) -> R.Case:
    rng = np.random.default_rng(seed)
    labels = np.zeros((4, 40, 40), np.uint8)
    labels[1:3, 10:20, 12:28] = 1
    labels[1:3, 22:30, 12:28] = 2
    image = (labels > 0).astype(np.float32)[None] * 100 + rng.normal(0, 1, (1, 4, 40, 40)).astype(np.float32)
    return R.Case(case_id, image, labels, geometry("PIR", (3.0, 1.0, 1.0)))  # (z,y,x) = (3, 1, 1) mm


def threshold_predictor(image: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Bright = structure; split into labels 1/2 by a fixed row: depends on absolute position and intensity."""
    out = (image[0] > 50).astype(np.uint8)
    out[:, 21:] *= 2
    return out


def test_sweep_reacts_to_position_intensity_and_noise(tmp_path):
    cases = [phantom_case("a", 0), phantom_case("b", 1)]
    summary = R.run_robustness(cases, threshold_predictor, tmp_path, max_shift_mm=8, steps=4,
                               intensity_scales=(0.25, 1.0, 4.0), noise_levels=(0.0, 3.0), progress=False)
    by_key = {(r["perturbation"], r["direction"], r["amount"]): r for r in summary}
    assert by_key[("shift", "superior", 0.0)]["Dice"] == pytest.approx(1.0)
    # along superior-inferior the fixed label boundary (row 21) cuts the shifted structures
    dice_inferior = [by_key[("shift", "inferior", s)]["Dice"] for s in (0.0, 2.0, 4.0, 6.0, 8.0)]
    assert all(a > b for a, b in zip(dice_inferior, dice_inferior[1:]))
    assert by_key[("shift", "inferior", 8.0)]["HD95"] > by_key[("shift", "inferior", 0.0)]["HD95"]
    # anterior-posterior shifts leave the boundary row alone: this predictor is invariant there
    assert by_key[("shift", "posterior", 6.0)]["Dice"] == pytest.approx(1.0)
    assert np.isnan(by_key[("intensity", "scale", 0.25)]["Dice"]) or by_key[("intensity", "scale", 0.25)]["Dice"] == 0
    assert by_key[("intensity", "scale", 0.25)]["missed"] == 4
    assert by_key[("intensity", "scale", 4.0)]["Dice"] == pytest.approx(1.0)
    assert by_key[("noise", "gaussian", 3.0)]["Dice"] < 0.99
    assert (tmp_path / "robustness.png").stat().st_size > 10_000
    with open(tmp_path / "robustness_cases.csv") as f:
        assert len(list(csv.DictReader(f))) == 2 * (4 * 5 + 3 + 2)


def test_predictor_shape_mismatch_is_reported():
    case = phantom_case("a", 0)
    with pytest.raises(ValueError, match="shape"):
        R.robustness_sweep([case], lambda image, geo: np.zeros((2, 2, 2)), shifts_mm=(0.0,), progress=False)
