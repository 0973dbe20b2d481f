"""Two-phase instance segmentation without networks: cutouts, merge, post-processing, naming, inputs.

The real-scan tests use tptbox's sample MRI (``tptbox_sample`` in conftest: read from the installed
package, never copied).
"""
import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.instance.centres import clean_semantic, vertebral_body_centres
from nnunetv2_symtc.instance.cutouts import CutoutSpec, make_cutout
from nnunetv2_symtc.dataset_conversion.phase2_cutouts import build_instance_dataset, phase2_cases
from nnunetv2_symtc.instance.phase2_spec import Phase2Spec, spider_to_spineps_semantic
from nnunetv2_symtc.instance.labeling import add_discs_and_endplates, name_vertebrae, spineps_to_spider, split_endplates
from nnunetv2_symtc.instance.merge import cutout_votes, merge_by_agreement
from nnunetv2_symtc.inference.inputs import load_input_case
from nnunetv2_symtc.inference.two_phase import PredictionSettings, TwoPhasePredictor
from nnunetv2_symtc.instance.assemble import assemble_instances
from nnunetv2_symtc.io import Geometry, read_image, to_sitk, write_image
from nnunetv2_symtc.labels import (BODY_VALUES, DISC, ENDPLATE, PHASE2_ABOVE, PHASE2_BELOW, SACRUM, SPINEPS_DISC_OFFSET,
                                   VERTEBRA_VALUES, VERTEBRAL_BODY, spineps_semantic_map)
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps


# --------------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def phantom():
    return generate_subject(0, PhantomConfig.tiny())


SMALL_CUTOUT = CutoutSpec((64.0, 120.0, 180.0), (4.0, 3.0, 3.0))


def dice(a, b):
    return 2.0 * (a & b).sum() / (a.sum() + b.sum())


def oracle_merge(semantic, instance, spacing, spec, swap=False):
    """Phase-2 cases from ground truth; their targets (optionally above/below swapped) fed to the merge."""
    phase2 = Phase2Spec(spec, "spineps", {})
    cases = list(phase2_cases(semantic, instance, spacing, phase2))
    votes = []
    for k, case in enumerate(cases):
        answer = case.target.copy()
        if swap:
            answer[case.target == PHASE2_ABOVE] = PHASE2_BELOW
            answer[case.target == PHASE2_BELOW] = PHASE2_ABOVE
        votes += cutout_votes(k, case.cutout, answer, np.isin(semantic, VERTEBRA_VALUES))
    merged, records = merge_by_agreement(votes, semantic.shape)
    return cases, merged, records


def vertebra_dices(merged, truth_ids_top_to_bottom, truth):
    """Dice of each ground-truth vertebra with the merged instance numbered at the same position."""
    return {v: dice(merged == k, truth == v) for k, v in enumerate(truth_ids_top_to_bottom, start=1)}


# --------------------------------------------------------------------------------------------
# real scan: oracle reconstruction, swapped phase 2, post-processing
# --------------------------------------------------------------------------------------------
def test_oracle_reconstruction_on_real_scan(tptbox_sample):
    _, semantic, instance, geometry = tptbox_sample
    truth = np.where(np.isin(semantic, VERTEBRA_VALUES) & (instance < SPINEPS_DISC_OFFSET), instance, 0)
    cases, merged, records = oracle_merge(semantic, instance, geometry.spacing_zyx, CutoutSpec.spineps_default())
    assert [c.vertebra_id for c in cases] == [5, 6, 7]
    assert cases[0].cutout.padding[1][0] > 0, "C5 is cut by the top of the field of view: its cutout must be padded"
    scores = vertebra_dices(merged, [5, 6, 7], truth)
    assert len(np.unique(merged)) == 4, np.unique(merged)
    assert all(d >= 0.99 for d in scores.values()), scores
    assert not any(r["flagged"] for r in records)
    middle = next(r for r in records if r["slot"] == 1)
    assert middle["rule"] == "majority" and sorted(middle["agreeing"]) == [0, 1, 2] and middle["agreement"] > 0.95


def test_swapped_phase2_changes_the_merge_and_is_flagged(tptbox_sample):
    _, semantic, instance, geometry = tptbox_sample
    truth = np.where(np.isin(semantic, VERTEBRA_VALUES) & (instance < SPINEPS_DISC_OFFSET), instance, 0)
    _, good, good_records = oracle_merge(semantic, instance, geometry.spacing_zyx, CutoutSpec.spineps_default())
    _, swapped, records = oracle_merge(semantic, instance, geometry.spacing_zyx, CutoutSpec.spineps_default(), swap=True)
    assert not np.array_equal(good, swapped)
    scores = vertebra_dices(swapped, [5, 6, 7], truth)
    assert min(scores.values()) < 0.9, scores
    assert any(r["flagged"] for r in records) and not any(r["flagged"] for r in good_records)
    conflicts = [r for r in records if r["rule"] == "conflict"]
    assert conflicts and all(max(r["dice"].values()) <= 0.3 for r in conflicts)


def test_postprocess_restores_discs_and_endplates_on_real_scan(tptbox_sample, tmp_path):
    paths, semantic, instance, geometry = tptbox_sample
    stripped = np.where(instance < SPINEPS_DISC_OFFSET, instance, 0)
    write_image(tmp_path / "vertebrae.nii.gz", stripped, geometry)
    out = tmp_path / "full.nii.gz"
    assert main(["postprocess", "--semantic", str(paths["semantic"]), "--instances",
                 str(tmp_path / "vertebrae.nii.gz"), "-o", str(out)]) == 0
    restored, restored_geometry = read_image(out)
    assert restored_geometry == geometry
    discs, endplates = semantic == DISC, semantic == ENDPLATE
    assert (restored[discs] == instance[discs]).mean() >= 0.99
    assert (restored[endplates] == instance[endplates]).mean() >= 0.95
    assert np.array_equal(restored[stripped > 0], stripped[stripped > 0]), "vertebra ids must be kept as given"
    metadata = json.loads((tmp_path / "full_metadata.json").read_text())
    assert metadata["warnings"] == [] and metadata["vertebrae_top_to_bottom"] == [5, 6, 7]


def test_postprocess_reads_split_endplates_and_keeps_unusual_ids(tptbox_sample, tmp_path):
    _, semantic, instance, geometry = tptbox_sample
    vertebrae = np.where(instance < SPINEPS_DISC_OFFSET, instance, 0)
    full, side, _ = add_discs_and_endplates(vertebrae, semantic, geometry.spacing_zyx)
    split = split_endplates(semantic, side)
    assert set(np.unique(split[semantic == ENDPLATE])) == {52, 53}
    again, _, _ = add_discs_and_endplates(vertebrae, split, geometry.spacing_zyx)
    assert np.array_equal(full, again)
    # hand-corrected ids with a gap: kept, with a warning, never refused
    unusual = np.select([vertebrae == 5, vertebrae == 6, vertebrae == 7], [12, 14, 15], 0)
    write_image(tmp_path / "semantic.nii.gz", semantic, geometry)
    write_image(tmp_path / "unusual.nii.gz", unusual.astype(np.uint8), geometry)
    assert main(["postprocess", "--semantic", str(tmp_path / "semantic.nii.gz"), "--instances",
                 str(tmp_path / "unusual.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) == 0
    out, _ = read_image(tmp_path / "out.nii.gz")
    assert {12, 14, 15, 112, 114, 212, 214, 215} <= set(np.unique(out).tolist())
    warnings = json.loads((tmp_path / "out_metadata.json").read_text())["warnings"]
    assert any("jump from 12 to 14" in w for w in warnings)
    # --relabel applies the naming rule: no sacrum, so the lowest vertebra is --lowest-vertebra
    assert main(["postprocess", "--semantic", str(tmp_path / "semantic.nii.gz"), "--instances",
                 str(tmp_path / "unusual.nii.gz"), "-o", str(tmp_path / "relabel.nii.gz"), "--relabel",
                 "--lowest-vertebra", "7"]) == 0
    relabelled, _ = read_image(tmp_path / "relabel.nii.gz")
    assert np.array_equal(relabelled, instance)


# --------------------------------------------------------------------------------------------
# phantom edge cases
# --------------------------------------------------------------------------------------------
def test_merged_bodies_are_split(phantom):
    semantic, _ = clean_semantic(phantom.spine_mask)
    spacing = phantom.geometry.spacing_zyx
    reference = vertebral_body_centres(semantic, spacing)
    # bridge the L2 and L3 bodies through the middle of their disc and endplates
    bridge = np.isin(phantom.vert_mask, (121, 221)) & np.isin(semantic, (DISC, ENDPLATE))
    mid_lr = int(round(reference[2].index_zyx[0]))
    mid_ap = int(round((reference[2].index_zyx[2] + reference[3].index_zyx[2]) / 2))
    column = np.zeros_like(bridge)
    column[mid_lr - 1:mid_lr + 2, :, mid_ap - 1:mid_ap + 2] = True
    fused = semantic.copy()
    fused[bridge & column] = VERTEBRAL_BODY
    assert len(vertebral_body_centres(fused, spacing, split_ratio=100.0)) == 5, "L2 and L3 are one component now"
    centres = vertebral_body_centres(fused, spacing)
    assert len(centres) == len(reference) == 6
    assert [c.origin for c in centres].count("split") == 2
    for found, expected in zip(centres, reference):
        assert np.linalg.norm((found.index_zyx - expected.index_zyx) * spacing) < 6.0


def test_duplicate_centres_are_merged(phantom):
    semantic, _ = clean_semantic(phantom.spine_mask)
    spacing = phantom.geometry.spacing_zyx
    reference = vertebral_body_centres(semantic, spacing)
    # a shell cut through the L3 body leaves a core and an outer layer: two components, one centre
    body = (phantom.vert_mask == 22) & (semantic == VERTEBRAL_BODY)
    cube = ndimage.generate_binary_structure(3, 3)
    core = ndimage.binary_erosion(body, cube, iterations=2)
    shell = ndimage.binary_erosion(body, cube, iterations=1) & ~core
    cut = semantic.copy()
    cut[shell] = 0
    assert ndimage.label(np.isin(cut, BODY_VALUES) & body, cube)[1] == 2
    centres = vertebral_body_centres(cut, spacing)
    assert len(centres) == len(reference) and [c.origin for c in centres].count("merged") == 1
    assert np.linalg.norm((centres[3].index_zyx - reference[3].index_zyx) * spacing) < 2.0
    assert len(vertebral_body_centres(cut, spacing, min_distance_mm=0.0)) > len(reference)


def test_vertebra_cut_by_field_of_view_is_padded_and_recovered(phantom):
    spacing = phantom.geometry.spacing_zyx
    cases, merged, records = oracle_merge(phantom.spine_mask, phantom.vert_mask, spacing, SMALL_CUTOUT)
    truth = np.where(np.isin(phantom.spine_mask, VERTEBRA_VALUES) & (phantom.vert_mask < SPINEPS_DISC_OFFSET),
                     phantom.vert_mask, 0)
    ids = [c.vertebra_id for c in cases]
    assert ids == [19, 20, 21, 22, 23, 24] and 19 in phantom.partial_ids
    assert cases[0].cutout.padding[1][0] > 0, "T12's cutout reaches above the field of view"
    assert cases[-1].record["below"] is None
    scores = vertebra_dices(merged, ids, truth)
    assert all(d >= 0.98 for d in scores.values()), scores


def test_empty_input_gives_empty_masks_and_a_warning():
    semantic = np.zeros((8, 20, 20), dtype=np.uint8)
    output = assemble_instances(semantic, [], [], (4.0, 3.0, 3.0), None, 24, "source convention")
    assert not output.instance.any() and output.instance.shape == semantic.shape
    assert any("no vertebral body" in w for w in output.warnings)
    assert vertebral_body_centres(semantic, (4.0, 3.0, 3.0)) == []


def test_level_naming_from_sacrum_and_override(phantom):
    spacing = phantom.geometry.spacing_zyx
    vertebrae = np.where(phantom.vert_mask < SPINEPS_DISC_OFFSET, phantom.vert_mask, 0)
    order = {v: k for k, v in enumerate(phantom.vertebra_ids[:-1], start=1)}
    anonymous = np.vectorize(lambda v: order.get(int(v), 0))(np.where(vertebrae == 26, 0, vertebrae)).astype(np.uint16)
    named, naming = name_vertebrae(anonymous, phantom.spine_mask, spacing)
    assert "sacrum" in naming["rule"] and naming["ids_top_to_bottom"] == [19, 20, 21, 22, 23, 24]
    assert np.array_equal(named[anonymous > 0], vertebrae[anonymous > 0])
    _, naming = name_vertebrae(anonymous, phantom.spine_mask, spacing, lowest_vertebra=22)
    assert naming["rule_source"] == "user" and naming["ids_top_to_bottom"] == [17, 18, 19, 20, 21, 22]
    no_sacrum = np.where(phantom.spine_mask == SACRUM, 0, phantom.spine_mask)
    named, naming = name_vertebrae(anonymous, no_sacrum, spacing, lowest_vertebra=22)
    assert "override" in naming["rule"] and naming["ids_top_to_bottom"] == [17, 18, 19, 20, 21, 22]
    _, naming = name_vertebrae(anonymous, no_sacrum, spacing)
    assert naming["ids_top_to_bottom"][-1] == 24 and "source convention" in naming["rule"]


def test_spider_semantics_get_bodies_in_front_of_the_canal(phantom):
    spider = spider_to_spineps_semantic(phantom.spider_mask())
    spacing = phantom.geometry.spacing_zyx
    truth = vertebral_body_centres(clean_semantic(phantom.spine_mask)[0], spacing)
    found = vertebral_body_centres(clean_semantic(spider)[0], spacing)
    assert len(found) == len(truth)
    for a, b in zip(found, truth):
        assert np.linalg.norm((a.index_zyx - b.index_zyx) * spacing) < 10.0


# --------------------------------------------------------------------------------------------
# phase-2 dataset and predictor checks
# --------------------------------------------------------------------------------------------
def test_instance_dataset_from_phantom(tmp_path):
    source = write_spineps(tmp_path / "bids", [(f"{i}", generate_subject(i, PhantomConfig.tiny())) for i in range(2)])
    assert main(["instance-dataset", "-i", str(source), "-d", "777", "-o", str(tmp_path / "raw"),
                 "--cutout-mm", *map(str, SMALL_CUTOUT.size_mm_zyx), "--spacing", *map(str, SMALL_CUTOUT.spacing_zyx)]) == 0
    folder = tmp_path / "raw" / "Dataset777_SPINEPSInstances"
    dataset_json = json.loads((folder / "dataset.json").read_text())
    assert dataset_json["labels"] == {"background": 0, "above": 1, "centre": 2, "below": 3}
    assert set(dataset_json["channel_names"].values()) == {"noNorm"} and len(dataset_json["channel_names"]) == 9
    assert dataset_json["numTraining"] == 12  # six vertebrae (T12-L5) per subject
    assert dataset_json["symtc_axes"] == {"left_right": 0, "superior_inferior": 1, "anterior_posterior": 2}
    spec = Phase2Spec.from_dataset_json(dataset_json)
    assert spec.phase1_labels == spineps_semantic_map().dataset_json_labels() and spec.cutout == SMALL_CUTOUT
    label, grid = read_image(folder / "labelsTr" / "sub-0_v22.nii.gz")
    assert label.shape == SMALL_CUTOUT.shape and grid.spacing_zyx == SMALL_CUTOUT.spacing_zyx
    assert set(np.unique(label)) == {0, 1, 2, 3}
    body, _ = read_image(folder / "imagesTr" / "sub-0_v22_0008.nii.gz")  # channel 8 = vertebral body (49)
    centre = np.array(SMALL_CUTOUT.shape) // 2
    assert body[tuple(centre)] == 1 and label[tuple(centre)] == 2
    records = json.loads((folder / "source_cases.json").read_text())
    assert records["sub-0_v19"]["padding_zyx"][1][0] > 0 and records["sub-0_v19"]["above"] is None
    splits = json.loads((folder / "splits_final.json").read_text())
    assert all({c.split("_v")[0] for c in fold["val"]}.isdisjoint({c.split("_v")[0] for c in fold["train"]})
               for fold in splits)


def _fake_model(folder: Path, labels: dict, instance_spec: dict = None, folds=("0",), configuration="3d_fullres"):
    """A model folder with the files our checks read: dataset.json, plans.json (a 2D and a 3D
    configuration) and checkpoints holding only the configuration they were trained with."""
    import torch

    folder.mkdir(parents=True)
    dataset_json = {"labels": labels, "channel_names": {"0": "T2w"}}
    if instance_spec is not None:
        dataset_json["symtc_instance"] = instance_spec
    (folder / "dataset.json").write_text(json.dumps(dataset_json))
    plans = {"configurations": {"2d": {"patch_size": [32, 32]}, "3d_fullres": {"patch_size": [8, 32, 32]}}}
    (folder / "plans.json").write_text(json.dumps(plans))
    for f in folds:
        (folder / f"fold_{f}").mkdir()
        torch.save({"init_args": {"configuration": configuration}}, folder / f"fold_{f}" / "checkpoint_final.pth")
    return folder


def test_predictor_refuses_mismatched_or_missing_models(tmp_path):
    spineps = spineps_semantic_map().dataset_json_labels()
    spec = Phase2Spec(SMALL_CUTOUT, "spineps", spineps).to_json()
    semantic = _fake_model(tmp_path / "semantic", spineps)
    other = _fake_model(tmp_path / "other", {"background": 0, "vertebra": 1, "disc": 2, "spinal_canal": 3})
    instance = _fake_model(tmp_path / "instance", {"background": 0, "above": 1, "centre": 2, "below": 3}, spec)
    TwoPhasePredictor([semantic], instance, PredictionSettings(folds=["0"], device="cpu"))
    with pytest.raises(ValueError, match=f"{other}.*does not match instance model {instance}"):
        TwoPhasePredictor([other], instance, PredictionSettings(folds=["0"], device="cpu"))
    with pytest.raises(OSError, match=f"{tmp_path / 'missing'}"):
        TwoPhasePredictor([tmp_path / "missing"], instance, PredictionSettings(device="cpu"))
    with pytest.raises(OSError, match="fold 3"):
        TwoPhasePredictor([semantic], instance, PredictionSettings(folds=["3"], device="cpu"))
    with pytest.raises(ValueError, match="symtc_instance"):
        TwoPhasePredictor([semantic], semantic, PredictionSettings(folds=["0"], device="cpu"))


def test_predictor_reads_the_model_dimension_from_checkpoint_and_plans(tmp_path):
    """The semantic model's dimension comes from the configuration its checkpoint was trained with,
    looked up in its plans (never from the folder name); a model that does not say is refused."""
    import torch

    spineps = spineps_semantic_map().dataset_json_labels()
    spec = Phase2Spec(SMALL_CUTOUT, "spineps", spineps).to_json()
    instance = _fake_model(tmp_path / "instance", {"background": 0, "above": 1, "centre": 2, "below": 3}, spec)
    settings = PredictionSettings(folds=["0"], device="cpu")
    for configuration, dim in (("2d", 2), ("3d_fullres", 3)):
        semantic = _fake_model(tmp_path / f"unparsable_name_{configuration}", spineps, configuration=configuration)
        assert TwoPhasePredictor([semantic], instance, settings).model_dim == dim
    unknown = _fake_model(tmp_path / "Trainer__Plans__2d", spineps, configuration="3d_lowres")
    with pytest.raises(OSError, match=r"plans.json: no configuration '3d_lowres'"):
        TwoPhasePredictor([unknown], instance, settings)
    silent = _fake_model(tmp_path / "Trainer__Plans__3d_fullres", spineps)
    torch.save({"network_weights": {}}, silent / "fold_0" / "checkpoint_final.pth")
    with pytest.raises(OSError, match=r"fold_0/checkpoint_final.pth: not an nnU-Net checkpoint"):
        TwoPhasePredictor([silent], instance, settings)


def test_bad_inputs_are_refused_before_any_model(tmp_path, phantom):
    image = phantom.images["t2"].astype(np.float32)
    good = tmp_path / "good.nii.gz"
    write_image(good, image, phantom.geometry)
    case = load_input_case("good", [good], 1, 3)
    assert case.data.shape == (1,) + image.shape and case.reoriented_from is None
    # sagittal but stored in another orientation: reoriented to PIR, original grid kept
    lps = tmp_path / "lps.nii.gz"
    sitk.WriteImage(sitk.DICOMOrient(to_sitk(image, phantom.geometry), "LPS"), str(lps))
    case = load_input_case("lps", [lps], 1, 3)
    assert case.reoriented_from == "LPS" and np.allclose(case.data[0], image)
    nan = image.copy()
    nan[3, 10, 10], nan[4, 10, 10] = np.nan, np.inf
    write_image(tmp_path / "nan.mha", nan, phantom.geometry)  # (ITK's NIfTI writer drops NaN)
    with pytest.raises(ValueError, match="nan.mha: 2 NaN/infinite"):
        load_input_case("nan", [tmp_path / "nan.mha"], 1, 3)
    with pytest.raises(ValueError, match="expects 2"):
        load_input_case("good", [good], 2, 3)
    sitk.WriteImage(sitk.GetImageFromArray(image[5]), str(tmp_path / "flat.nii.gz"))
    with pytest.raises(ValueError, match="2D image"):
        load_input_case("flat", [tmp_path / "flat.nii.gz"], 1, 3)
    # axial slices: the thick axis runs superior-inferior
    axial = Geometry((4.0, 0.8, 0.8), (0.0, 0.0, 0.0), (1, 0, 0, 0, 1, 0, 0, 0, 1))
    write_image(tmp_path / "axial.nii.gz", image, axial)
    with pytest.raises(ValueError, match="not a sagittal"):
        load_input_case("axial", [tmp_path / "axial.nii.gz"], 1, 3)


def test_cutout_round_trip_and_padding():
    spec = CutoutSpec((20.0, 30.0, 30.0), (1.0, 1.0, 1.0))
    volume = np.arange(10 * 12 * 14).reshape(10, 12, 14)
    cutout = make_cutout((1.0, 6.0, 7.0), volume.shape, (2.0, 2.0, 2.0), spec)
    assert spec.shape == (20, 30, 30)
    assert cutout.padding[0][0] > 0 and cutout.padding[0][1] == 0
    taken = cutout.take(volume)
    assert np.array_equal(cutout.paste(taken), volume[cutout.box])
    # linear resampling reproduces a linear ramp exactly inside the field of view
    ramp = volume.astype(np.float32)  # = 168 z + 14 y + x
    linear = cutout.take(ramp, linear=True)
    z, y, x = (p[15] for p in cutout.position)
    assert linear.shape == spec.shape and np.isclose(linear[15, 15, 15], 168 * z + 14 * y + x, atol=1e-3)
    assert linear[0, 15, 15] == 0, "padding is 0"


def test_instance_dataset_from_spider(tmp_path, phantom):
    from nnunetv2_symtc.phantom import write_spider
    overview = write_spider(tmp_path / "spider", [(1, phantom), (2, generate_subject(1, PhantomConfig.tiny()))])
    folder = build_instance_dataset(overview.parent, 778, scheme="spider", cutout=SMALL_CUTOUT, raw_dir=tmp_path / "raw")
    dataset_json = json.loads((folder / "dataset.json").read_text())
    spec = Phase2Spec.from_dataset_json(dataset_json)
    assert spec.scheme == "spider" and len(dataset_json["channel_names"]) == 4
    assert spec.phase1_labels == {"background": 0, "vertebra": 1, "disc": 2, "spinal_canal": 3}
    assert dataset_json["numTraining"] == 12
    label, _ = read_image(folder / "labelsTr" / "1_t2_v22.nii.gz")
    assert set(np.unique(label)) == {0, 1, 2, 3}


def test_spider_values_agree_with_the_phantom(phantom):
    spider = spineps_to_spider(phantom.vert_mask, phantom.spine_mask, phantom.geometry.spacing_zyx)
    truth = phantom.spider_mask()
    full = (truth >= 1) & (truth <= 25)
    partial = (truth > 100) & (truth < 200)
    discs = truth > 200
    assert partial.any()  # the tiny phantom's field of view cuts its top vertebra
    for region in (full, partial):
        assert (spider[region] == truth[region]).mean() > 0.97  # endplates: nearest vertebra vs. their owner
    assert np.array_equal(spider[discs], truth[discs])
    assert np.array_equal(spider == 100, truth == 100)


def test_postprocess_output_is_on_the_semantic_grid(tptbox_sample, tmp_path):
    _, semantic, instance, geometry = tptbox_sample
    stripped = np.where(instance < SPINEPS_DISC_OFFSET, instance, 0).astype(np.uint8)
    for name, array in (("semantic", semantic), ("vertebrae", stripped), ("truth", instance)):
        sitk.WriteImage(sitk.DICOMOrient(to_sitk(array, geometry), "LPS"), str(tmp_path / f"{name}.nii.gz"))
    assert main(["postprocess", "--semantic", str(tmp_path / "semantic.nii.gz"), "--instances",
                 str(tmp_path / "vertebrae.nii.gz"), "-o", str(tmp_path / "out.nii.gz")]) == 0
    out, out_geometry = read_image(tmp_path / "out.nii.gz")
    truth, truth_geometry = read_image(tmp_path / "truth.nii.gz")
    assert out_geometry.orientation == "LPS" and out.shape == truth.shape
    assert np.allclose(out_geometry.origin_xyz, truth_geometry.origin_xyz)
    assert (out == truth).mean() > 0.999


def test_more_candidates_than_levels_keeps_the_lowest_and_reports_the_rest():
    """A poor phase 1 can yield dozens of 'bodies': naming must not crash (it used to raise)."""
    count = 30
    instance = np.zeros((3, 4 * count, 6), dtype=np.uint16)
    values = [v for v in range(1, count + 2) if v != SACRUM]  # 26 is the sacrum's id in instance maps
    for k, value in enumerate(values):  # array axis 1 runs inferior: the first value is the topmost
        instance[:, 4 * k:4 * k + 3, :] = value
    semantic = np.where(instance > 0, VERTEBRAL_BODY, 0).astype(np.uint8)
    named, naming = name_vertebrae(instance, semantic, (1.0, 1.0, 1.0), lowest_vertebra=24)
    assert naming["unnamed_top_candidates"] == count - 24
    assert naming["ids_top_to_bottom"] == list(range(1, 25))
    assert not named[:, :4 * (count - 24), :].any()          # the six topmost candidates are removed
    assert named[0, 4 * (count - 1), 0] == 24                # the lowest one is the lowest vertebra
    assert named[0, 4 * (count - 24), 0] == 1

    numbered = np.zeros_like(instance)  # merged phase-2 candidates are numbered 1..n, 26 included
    for k in range(count):
        numbered[:, 4 * k:4 * k + 3, :] = k + 1
    named, naming = name_vertebrae(numbered, semantic, (1.0, 1.0, 1.0), lowest_vertebra=24, sacrum_id=None)
    assert naming["unnamed_top_candidates"] == count - 24
    assert named[0, 4 * (SACRUM - 1), 0] == SACRUM - (count - 24)  # candidate 26 is named, not kept as sacrum
    assert SACRUM not in named


def test_semantic_input_files_are_checked_before_any_model(tmp_path, phantom, capsys):
    """``symtc predict --semantic-input``: one mask per image case, on its image's grid, in SPINEPS values."""
    spineps = spineps_semantic_map().dataset_json_labels()
    spec = Phase2Spec(SMALL_CUTOUT, "spineps", spineps).to_json()
    instance = _fake_model(tmp_path / "instance", {"background": 0, "above": 1, "centre": 2, "below": 3}, spec)
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir(), masks.mkdir()
    for case in ("a", "b"):
        write_image(images / f"{case}_0000.nii.gz", phantom.images["t2"].astype(np.float32), phantom.geometry)
    write_image(masks / "a_seg-spine_msk.nii.gz", phantom.spine_mask, phantom.geometry)
    argv = ["predict", "-i", str(images), "-o", str(tmp_path / "out"), "--semantic-input", str(masks),
            "--instance-model", str(instance), "-f", "0", "-device", "cpu"]

    def error_of(extra=()):
        assert main(argv + list(extra)) == 1
        return capsys.readouterr().err

    assert "no semantic mask for 1 image case(s): b_seg-spine_msk.nii.gz" in error_of()
    write_image(masks / "b_seg-spine_msk.nii.gz", phantom.spine_mask, phantom.geometry)
    write_image(masks / "c_seg-spine_msk.nii.gz", phantom.spine_mask, phantom.geometry)
    assert f"without an image case in -i: {masks / 'c_seg-spine_msk.nii.gz'}" in error_of()
    (masks / "c_seg-spine_msk.nii.gz").unlink()
    coarser = Geometry(tuple(2 * s for s in phantom.geometry.spacing_xyz), phantom.geometry.origin_xyz,
                       phantom.geometry.direction)
    write_image(masks / "b_seg-spine_msk.nii.gz", phantom.spine_mask, coarser)
    message = error_of()
    assert f"{masks / 'b_seg-spine_msk.nii.gz'}: grid" in message and "b_0000.nii.gz" in message
    wrong = phantom.spine_mask.copy()
    wrong[0, 0, 0] = 7
    write_image(masks / "b_seg-spine_msk.nii.gz", wrong, phantom.geometry)
    assert "b_seg-spine_msk.nii.gz: values [7] are not SPINEPS semantic labels" in error_of()
    write_image(masks / "b_seg-spine_msk.nii.gz", phantom.spine_mask, phantom.geometry)
    assert "with --semantic-input there are none" in error_of(["--save_probabilities"])
    with pytest.raises(SystemExit):  # --semantic-model and --semantic-input exclude each other
        main(argv + ["--semantic-model", str(instance)])
    assert not (tmp_path / "out").exists()
