"""``symtc measure``: per-level spine geometry against the phantom's true anatomy, in any
orientation, on tptbox's real SPINEPS masks, and with bad input."""
import json

import numpy as np
import pytest
import SimpleITK as sitk

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.cli import main
from nnunetv2_symtc.errors import InputError
from nnunetv2_symtc.io import reorient, to_sitk
from nnunetv2_symtc.measurement import LEVEL_FIELDS, measure_images, measure_masks
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps
from nnunetv2_symtc.phantom.anatomy import ShapeVariation, sample_anatomy
from nnunetv2_symtc.phantom.truth import true_measurements

SLIPPED = ShapeVariation(slips_mm=((23, 6.0),), disc_height_factors=((24, 0.45),))
"""L4 slipped 6 mm over L5, a degenerated (thin) L5/S1 disc."""


@pytest.fixture(scope="module")
def slipped():
    """(subject at 1 mm in-plane, its true measurements) with ``SLIPPED``."""
    subject = generate_subject(0, PhantomConfig(spacing_zyx=(4.0, 1.0, 1.0), n_slices=15, sequences=(), variation=SLIPPED))
    return subject, true_measurements(subject.anatomy, "truth")


def _errors(measured, truth, unit):
    errors = []
    for row in truth.levels:
        got = measured.level(row.level)
        for field in LEVEL_FIELDS:
            if field.endswith(unit) and row.values[field] is not None and got.values[field] is not None:
                errors.append(got.values[field] - row.values[field])
    return np.abs(errors)


def test_measurements_match_the_phantom_truth_at_1mm(slipped):
    subject, truth = slipped
    measured = measure_masks(subject.spine_mask, subject.vert_mask, subject.geometry.spacing_zyx, "s0")
    assert [r.level for r in measured.levels] == ["T12", "L1", "L2", "L3", "L4", "L5"]
    assert measured.level("L4").disc == "L4/L5" and measured.level("L5").disc == "L5/S1"
    mm, deg = _errors(measured, truth, "_mm"), _errors(measured, truth, "_deg")
    assert mm.size >= 50 and deg.size >= 10
    assert mm.mean() <= 0.5 and deg.mean() <= 2.0, (mm.mean(), deg.mean())
    assert abs(measured.lumbar_lordosis_deg - truth.lumbar_lordosis_deg) <= 2.0
    # The slip and the thin disc are seen: L4 6 mm forward, L5/S1 much thinner than L4/L5.
    assert measured.level("L4").values["slip_mm"] == pytest.approx(truth.level("L4").values["slip_mm"], abs=1.0)
    assert truth.level("L4").values["slip_mm"] > 4.0
    assert measured.level("L5").values["disc_middle_height_mm"] < 0.6 * measured.level("L4").values["disc_middle_height_mm"]
    # The top vertebra is cut by the field of view: no body heights, and the reason says so.
    t12 = measured.level("T12")
    assert t12.values["body_middle_height_mm"] is None
    assert "cut by the field of view" in t12.reasons["body_middle_height_mm"]
    assert t12.values["disc_middle_height_mm"] is not None


def test_truth_follows_the_controlled_variation(slipped):
    subject, truth = slipped
    plain = true_measurements(generate_subject(0, PhantomConfig(spacing_zyx=(4.0, 1.0, 1.0), n_slices=15,
                                                                sequences=())).anatomy)
    # Same random stream: the slip adds its 6 mm along the L5 endplate; the thin disc loses about 55 % of its height.
    assert truth.level("L4").values["slip_mm"] - plain.level("L4").values["slip_mm"] == pytest.approx(6.0, abs=0.15)
    disc = subject.anatomy.disc_heights[-1] / 0.45
    lost = plain.level("L5").values["disc_middle_height_mm"] - truth.level("L5").values["disc_middle_height_mm"]
    assert lost == pytest.approx(0.55 * disc, abs=0.5)  # the bodies move along the disc axis, not the lines
    assert truth.level("L2").values["body_middle_height_mm"] == pytest.approx(plain.level("L2").values["body_middle_height_mm"])
    # Lordosis from flat to deep; the truth's Cobb angle follows the shape model's.
    flat, deep = (sample_anatomy(np.random.default_rng(3), variation=ShapeVariation(lordosis_scale=s)) for s in (0.3, 1.6))
    assert flat.lordosis_deg < 20.0 < 60.0 < deep.lordosis_deg
    assert true_measurements(flat).lumbar_lordosis_deg == pytest.approx(flat.lordosis_deg, abs=1.0)
    short = sample_anatomy(np.random.default_rng(3), variation=ShapeVariation(body_height_factors=((21, 0.75),)))
    normal = sample_anatomy(np.random.default_rng(3))
    assert short.bone(21).height == pytest.approx(0.75 * normal.bone(21).height)
    assert short.bone(23).height == normal.bone(23).height
    with pytest.raises(ValueError, match="vertebra id 25"):
        sample_anatomy(np.random.default_rng(3), variation=ShapeVariation(slips_mm=((25, 3.0),)))


def test_any_orientation_gives_the_same_values(slipped):
    subject, _ = slipped
    semantic, instance = (to_sitk(a, subject.geometry) for a in (subject.spine_mask, subject.vert_mask))
    pir = measure_images(semantic, instance, "pir")
    lps = measure_images(reorient(semantic, "LPS"), reorient(instance, "LPS"), "lps")
    for a, b in zip(pir.levels, lps.levels):
        assert a.values == b.values and a.reasons == b.reasons
    assert lps.lumbar_lordosis_deg == pir.lumbar_lordosis_deg


def test_missing_structures_give_empty_values_with_reasons(slipped):
    subject, _ = slipped
    spacing = subject.geometry.spacing_zyx
    vert = subject.vert_mask.copy()
    vert[vert == L.SPINEPS_DISC_OFFSET + 22] = 0  # no L3/L4 disc
    spine = subject.spine_mask.copy()
    spine[(spine == L.ENDPLATE) & (subject.bone_ids() == 21)] = L.VERTEBRAL_BODY  # L2 without endplates
    m = measure_masks(spine, vert, spacing, "case7")
    l3, l2 = m.level("L3"), m.level("L2")
    assert l3.disc == "" and l3.values["disc_middle_height_mm"] is None
    assert "L3: no disc below it" in l3.reasons["disc_middle_height_mm"]
    assert l3.values["body_middle_height_mm"] is not None and l3.values["segmental_angle_deg"] is not None
    assert l2.values["body_middle_height_mm"] is None and "L2: no superior endplate label" in l2.reasons["body_middle_height_mm"]
    assert m.level("L1").values["segmental_angle_deg"] is None
    empty = measure_masks(np.zeros_like(spine), np.zeros_like(vert), spacing, "blank")
    assert empty.levels == [] and "no vertebra" in empty.reason
    with pytest.raises(ValueError, match="case7: semantic mask .* differ in shape"):
        measure_masks(spine[:, 1:], vert, spacing, "case7")


def test_cli_writes_tables_and_fails_only_on_bad_files(slipped, tmp_path, capsys):
    subject, _ = slipped
    masks = tmp_path / "masks"
    write_spineps(masks, [("a", subject)])
    assert main(["measure", "-i", str(masks), "-o", str(tmp_path / "out")]) == 0
    rows = (tmp_path / "out" / "measurements.csv").read_text().splitlines()
    assert rows[0].startswith("case,level,vertebra_id,disc,body_anterior_height_mm") and len(rows) == 7
    case = json.loads((tmp_path / "out" / "sub-a_measurements.json").read_text())
    assert case["levels"][4]["level"] == "L4" and case["levels"][4]["slip_mm"] > 4.0
    drawing = sitk.ReadImage(str(tmp_path / "out" / "sub-a_measurements.png"))
    assert min(drawing.GetSize()[:2]) > 100
    # A semantic mask on another grid, and an unreadable file: named, exit status 1.
    image = sitk.ReadImage(str(masks / "sub-a_seg-spine_msk.nii.gz"))
    image.SetSpacing((2.0, 2.0, 4.0))
    sitk.WriteImage(image, str(masks / "sub-b_seg-spine_msk.nii.gz"))
    sitk.WriteImage(sitk.ReadImage(str(masks / "sub-a_seg-vert_msk.nii.gz")), str(masks / "sub-b_seg-vert_msk.nii.gz"))
    (masks / "sub-c_seg-spine_msk.nii.gz").write_text("not an image")
    (masks / "sub-c_seg-vert_msk.nii.gz").write_text("not an image")
    assert main(["measure", "-i", str(masks), "-o", str(tmp_path / "out2")]) == 1
    out = capsys.readouterr().out
    assert "sub-b: the semantic mask" in out and "not on the same grid" in out
    assert "sub-c_seg-spine_msk.nii.gz: cannot be read" in out
    spider = to_sitk(subject.spine_mask, subject.geometry), to_sitk(subject.spider_mask(), subject.geometry)
    with pytest.raises(InputError, match=r"spider: values \[.*\] of the instance mask are not SPINEPS instance values"):
        measure_images(*spider, "spider")
    assert len((tmp_path / "out2" / "measurements.csv").read_text().splitlines()) == 7  # sub-a still measured
    (masks / "sub-d_seg-vert_msk.nii.gz").write_text("")
    assert main(["measure", "-i", str(masks), "-o", str(tmp_path / "out3")]) == 1
    assert "sub-d (no _seg-spine_msk.nii.gz)" in capsys.readouterr().err


def test_real_spineps_masks_are_in_anatomical_ranges(tptbox_sample):
    paths, semantic, instance, geometry = tptbox_sample
    m = measure_images(*(sitk.ReadImage(str(paths[k])) for k in ("semantic", "instance")), case="tptbox")
    assert [r.level for r in m.levels] == ["C5", "C6", "C7"]
    c6 = m.level("C6")
    ranges = {"body_anterior_height_mm": (8, 35), "body_middle_height_mm": (8, 35), "body_posterior_height_mm": (8, 35),
              "body_depth_mm": (12, 50), "body_wedge_deg": (-15, 15), "disc_anterior_height_mm": (2, 18),
              "disc_middle_height_mm": (2, 18), "disc_posterior_height_mm": (2, 18), "disc_height_index": (0.1, 0.8),
              "segmental_angle_deg": (-20, 25), "slip_mm": (-8, 8), "canal_ap_body_mm": (6, 25),
              "canal_ap_disc_mm": (6, 25)}
    for field, (low, high) in ranges.items():
        assert low <= c6.values[field] <= high, (field, c6.values[field])
    assert m.level("C5").values["disc_middle_height_mm"] is not None
    # C5 and C7 are cut by the field of view; there is no C7/T1 disc and no lumbar spine.
    assert "cut by the field of view" in m.level("C5").reasons["body_middle_height_mm"]
    assert "C7: no disc below it" in m.level("C7").reasons["disc_middle_height_mm"]
    assert m.lumbar_lordosis_deg is None and "no L1" in m.lordosis_reason


def test_predict_measure_writes_the_tables_next_to_the_masks(slipped, tmp_path, monkeypatch, capsys):
    """``symtc predict --measure``: the predicted masks in -o are measured there (phase 1 and 2 stubbed)."""
    from nnunetv2_symtc.inference import two_phase

    subject, _ = slipped

    def predicted(predictor, images, out, **settings):
        write_spineps(out, [("a", subject)])
        return ["sub-a"]

    monkeypatch.setattr(two_phase, "TwoPhasePredictor", lambda *args, **kwargs: None)
    monkeypatch.setattr(two_phase, "predict_folder", predicted)
    argv = ["predict", "-i", str(tmp_path), "-o", str(tmp_path / "out"), "--semantic-input", str(tmp_path),
            "--instance-model", str(tmp_path), "-device", "cpu", "--measure"]
    assert main(argv) == 0
    assert "sub-a: 6 level(s), lumbar lordosis" in capsys.readouterr().out
    row = measure_masks(subject.spine_mask, subject.vert_mask, subject.geometry.spacing_zyx).level("L3")
    start, end = row.segments["disc_middle_height_mm"]  # the drawn line is one of the averaged ones
    assert np.linalg.norm(end - start) == pytest.approx(row.values["disc_middle_height_mm"], abs=0.5)
    assert json.loads((tmp_path / "out" / "sub-a_measurements.json").read_text())["levels"][4]["slip_mm"] > 4.0
    assert main(argv + ["--spider-values"]) == 1
    assert "--measure reads SPINEPS instance values" in capsys.readouterr().err
