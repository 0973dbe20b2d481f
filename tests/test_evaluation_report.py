"""Folder evaluation: nnU-Net's own Dice as cross-check, summary.json schema, CSVs, CLI, errors."""
import csv
import json
import math

import numpy as np
import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.evaluation import report
from nnunetv2_symtc.io import Geometry, write_image

GEOMETRY = Geometry((3.0, 0.6, 0.5), (0.0, 0.0, 0.0), (0, 0, 1, 1, 0, 0, 0, 1, 0))


def spine_like(seed: int) -> np.ndarray:
    """Stacked boxes labelled like SPIDER: vertebrae 1-3, discs 201-202, canal 100."""
    rng = np.random.default_rng(seed)
    labels = np.zeros((8, 64, 32), np.uint16)
    top = 4
    for level in (3, 2, 1):
        height = int(rng.integers(9, 12))
        labels[1:7, top:top + height, 4:20] = level
        top += height
        if level > 1:
            labels[1:7, top:top + 3, 4:20] = 200 + level - 1
            top += 3
    labels[3:5, 2:62, 22:27] = 100
    return labels


def perturbed(labels: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    out = np.roll(labels, int(rng.integers(1, 3)), axis=1)
    out[:, :, int(rng.integers(5, 9))] = 0
    return out


@pytest.fixture()
def folders(tmp_path):
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    for case in range(3):
        labels = spine_like(case)
        write_image(ref / f"case_{case}.nii.gz", labels, GEOMETRY)
        write_image(pred / f"case_{case}.nii.gz", perturbed(labels, case), GEOMETRY)
    return ref, pred


def test_dice_matches_nnunet_evaluation(folders, tmp_path):
    from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder_simple, load_summary_json

    ref, pred = folders
    labels = [1, 2, 3, 100, 201, 202]
    compute_metrics_on_folder_simple(str(ref), str(pred), labels, str(tmp_path / "nnunet.json"), num_processes=1)
    theirs = load_summary_json(str(tmp_path / "nnunet.json"))
    ours = report.evaluate_folders(ref, pred, tmp_path / "ours", progress=False)
    assert list(ours["mean"]) == [str(v) for v in labels]
    for mine, nnunet in zip(ours["metric_per_case"], theirs["metric_per_case"]):
        assert mine["prediction_file"] == nnunet["prediction_file"]
        for label in labels:
            for key in ("Dice", "IoU", "TP", "FP", "FN", "TN", "n_ref", "n_pred"):
                assert mine["metrics"][str(label)][key] == pytest.approx(nnunet["metrics"][label][key], abs=1e-12)
    for key in ("Dice", "IoU"):
        assert ours["foreground_mean"][key] == pytest.approx(theirs["foreground_mean"][key], abs=1e-12)


def test_cli_spider_scheme_writes_summary_csvs_and_overlays(folders, tmp_path, capsys):
    ref, pred = folders
    out = tmp_path / "out"
    assert main(["evaluate", "-ref", str(ref), "-pred", str(pred), "-o", str(out), "--scheme", "spider",
                 "--instances", "--overlays", "1"]) == 0
    printed = capsys.readouterr().out
    assert "vertebra 1 (L5)" in printed and "SPIDER:" in printed and "PQ" in printed
    summary = json.loads((out / "summary.json").read_text())
    case = summary["metric_per_case"][0]
    for key in ("Dice", "HD95", "ASSD", "volume_ref_mm3"):
        assert key in case["metrics"]["1"]
    assert {"pq", "sq", "rq", "tp", "fp", "fn", "pq_dsc", "sq_dsc", "matches"} <= set(case["instances"])
    assert case["spider"]["DetectionRateDiscs"] == 1.0
    assert summary["definitions"]["spider_spacing"] == "official_xyz"
    assert "medpy" in summary["definitions"]["HD95"] and summary["definitions"]["assd_definition"] == "pooled"
    assert summary["structure_names"]["201"] == "disc 1 (L5/S1)"
    assert set(summary["spider"]["DiceScoreVertebrae"]) == {"mean", "std"}
    with open(out / "metrics_per_case.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 * 6 and {"HD95", "ASSD", "Dice"} <= set(rows[0])
    assert (out / "instances.csv").is_file() and (out / "spider_per_case.csv").is_file()
    assert len(list((out / "worst_cases").glob("*.png"))) == 1
    loaded = report.load_summary(out / "summary.json")
    assert loaded["mean"]["1"]["HD95"] == pytest.approx(summary["mean"]["1"]["HD95"])


def test_parallel_equals_serial_and_empty_structures_are_nan(folders, tmp_path):
    ref, pred = folders
    # a structure present in only one case: absent elsewhere -> NaN there, excluded from the mean
    labels = spine_like(0)
    labels[6, 60:63, 28:31] = 7
    write_image(ref / "case_0.nii.gz", labels, GEOMETRY)
    serial = report.evaluate_folders(ref, pred, tmp_path / "a", progress=False)
    parallel = report.evaluate_folders(ref, pred, tmp_path / "b", num_processes=2, progress=False)
    assert json.dumps(report._json_safe(serial["mean"])) == json.dumps(report._json_safe(parallel["mean"]))
    case_1 = serial["metric_per_case"][1]["metrics"]["7"]
    assert math.isnan(case_1["Dice"]) and case_1["TN"] == labels.size
    assert serial["mean"]["7"]["Dice"] == 0 and serial["mean"]["7"]["missed"] == pytest.approx(1 / 3)


def test_nnunet_scheme_reads_dataset_json(folders, tmp_path, monkeypatch):
    ref, pred = folders
    raw = tmp_path / "raw"
    (raw / "Dataset977_Eval").mkdir(parents=True)
    (raw / "Dataset977_Eval" / "dataset.json").write_text(json.dumps(
        {"labels": {"background": 0, "L5": 1, "L4": 2, "ignore": 3}, "channel_names": {"0": "T2"},
         "numTraining": 3, "file_ending": ".nii.gz"}))
    monkeypatch.setenv("nnUNet_raw", str(raw))
    setup = report.nnunet_label_setup("977")
    assert setup.structures == {"1": (1,), "2": (2,)} and setup.ignore_label == 3
    summary = report.evaluate_folders(ref, pred, tmp_path / "out", report.EvaluationOptions(labels=setup),
                                      progress=False)
    assert list(summary["mean"]) == ["1", "2"] and summary["structure_names"]["2"] == "L4"
    m = summary["metric_per_case"][0]["metrics"]["2"]
    assert m["TP"] + m["FP"] + m["FN"] + m["TN"] == np.count_nonzero(spine_like(0) != 3)
    with pytest.raises(OSError, match="Dataset977_Eval|978"):
        report.nnunet_label_setup("Dataset978_Missing")


def test_unpaired_files_are_named(folders, capsys):
    ref, pred = folders
    (pred / "case_2.nii.gz").rename(pred / "case_9.nii.gz")
    with pytest.raises(ValueError, match=r"case_2\.nii\.gz.*case_9\.nii\.gz"):
        report.pair_files(ref, pred)
    assert main(["evaluate", "-ref", str(ref), "-pred", str(pred), "-o", str(pred.parent / "o")]) == 1
    assert "no partner" in capsys.readouterr().err
    assert main(["evaluate", "-ref", str(ref), "-pred", str(pred), "-o", "x", "--scheme", "nnunet"]) == 1
