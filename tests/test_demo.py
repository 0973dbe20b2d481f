"""``symtc demo`` end to end at the ``tiny`` budget: the README's main command, wired through every stage."""
import json
import math

import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.demo import BUDGETS, format_headline, headline


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_its_outputs(tmp_path, monkeypatch):
    output = tmp_path / "demo"
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["demo", "-o", str(output), "--budget", "tiny", "-device", "cpu"]) == 0

    summary = json.loads((output / "summary.json").read_text())
    assert summary["budget"] == "tiny" and summary["device"] == "cpu"
    stages = list(summary["stage_seconds"])  # every stage before the results stage, which writes the file
    assert len(stages) == 7 and stages[0] == "Generate phantom subjects" and stages[-1] == "Evaluate"
    budget = BUDGETS["tiny"]
    assert len(summary["subjects"]["train"]) == budget.train_subjects
    assert set(summary["headline"]) == {"two-phase semantic", "two-phase instance", "levels 2d SymTCTrainer_small",
                                        "levels 2d nnUNetTrainerSizeAdaptiveCE", "levels 2d ensemble"}
    assert "PQ" in summary["headline"]["two-phase instance"]
    for row in summary["headline"].values():
        assert all(0.0 <= v <= 1.0 for k, v in row.items() if k.startswith("Dice") and not math.isnan(v))

    for case in summary["subjects"]["test"]:
        stem = f"sub-{case}_T2w"
        for suffix in ("_seg-spine_msk.nii.gz", "_seg-vert_msk.nii.gz", "_seg-spine_ctd.json", "_seg-spine_snp.png",
                       "_metadata.json"):
            assert (output / "two_phase" / f"{stem}{suffix}").is_file(), f"{stem}{suffix} missing"
    assert len(list((output / "plots").glob("training_*.png"))) == 4
    assert (output / "evaluation" / "two_phase_instance" / "summary.json").is_file()
    assert (output / "levels" / "ensemble").is_dir()


def test_demo_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("user data")
    assert main(["demo", "-o", str(tmp_path), "--budget", "tiny", "-device", "cpu"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_headline_groups_structures_by_kind():
    summary = {"mean": {"41": {"Dice": 0.5}, "49": {"Dice": 0.7}, "100": {"Dice": 0.9}, "61": {"Dice": 0.1},
                        "26": {"Dice": float("nan")}},
               "structure_names": {}, "foreground_mean": {"HD95": 3.0}}
    row = headline(summary, "semantic")
    assert row["Dice vertebrae"] == pytest.approx(0.6) and row["Dice discs"] == pytest.approx(0.9)
    instances = {"mean": {"20": {"Dice": 0.8}, "120": {"Dice": 0.4}, "220": {"Dice": 0.0}},
                 "structure_names": {}, "foreground_mean": {"HD95": 1.0}, "instances_mean": {"pq": 0.25}}
    row = headline(instances, "instance")
    assert (row["Dice vertebrae"], row["Dice discs"], row["PQ"]) == (0.8, 0.4, 0.25)
    levels = {"mean": {"1": {"Dice": 0.2}, "7": {"Dice": 0.6}, "13": {"Dice": 1.0}},
              "structure_names": {"1": "vertebra_1", "7": "disc_1", "13": "canal"}, "foreground_mean": {"HD95": 2.0}}
    assert headline(levels, "levels")["Dice discs"] == 0.6
    table = format_headline({"a": row})
    assert "Dice vertebrae" in table.splitlines()[0] and "PQ" in table.splitlines()[0]
