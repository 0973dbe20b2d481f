"""``symtc demo`` end to end at the ``tiny`` budget: the README's main command, wired through every stage."""
import json
import math

import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.demo import BUDGETS, HEADLINE_COLUMNS, PHASE1_VARIANTS, ROLES, format_headline


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_its_outputs(tmp_path, monkeypatch):
    output = tmp_path / "demo"
    for variable in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["demo", "-o", str(output), "--budget", "tiny", "-device", "cpu"]) == 0

    summary = json.loads((output / "summary.json").read_text())
    assert summary["budget"] == "tiny" and summary["device"] == "cpu"
    stages = list(summary["stage_seconds"])  # every stage before the results stage, which writes the file
    assert len(stages) == 6 and stages[0] == "Generate phantom subjects" and stages[-1] == "Evaluate"
    budget = BUDGETS["tiny"]
    assert len(summary["subjects"]["train"]) == budget.train_subjects
    assert not set(summary["subjects"]["train"]) & set(summary["subjects"]["test"])
    assert set(summary["headline"]) == set(PHASE1_VARIANTS)
    for row in summary["headline"].values():
        assert set(HEADLINE_COLUMNS) <= set(row)
        assert all(0.0 <= row[c] <= 1.0 for c in HEADLINE_COLUMNS if not math.isnan(row[c]))
    # SymTC came from its plans: the plans name the network, the trainer does not
    assert summary["plans"]["symtc"]["architecture"]["network_class_name"].endswith(".SymTC")
    assert set(summary["models"]) == set(ROLES)

    variants = sorted(p.name for p in (output / "two_phase").iterdir())
    assert len(variants) == len(PHASE1_VARIANTS)
    for variant in variants:
        for case in summary["subjects"]["test"]:
            stem = f"sub-{case}_T2w"
            for suffix in ("_seg-spine_msk.nii.gz", "_seg-vert_msk.nii.gz", "_seg-spine_ctd.json",
                           "_seg-spine_snp.png", "_metadata.json"):
                assert (output / "two_phase" / variant / f"{stem}{suffix}").is_file(), f"{variant}/{stem}{suffix}"
    assert len(list((output / "plots").glob("training_*.png"))) == len(ROLES)
    evaluations = list(summary["evaluations"].values())
    assert len(set(evaluations)) == len(evaluations)  # each run points at its own folder
    for folder in evaluations:
        assert (output / "evaluation").resolve() in (output / folder).resolve().parents
        assert (output / folder / "instance" / "summary.json").is_file()

    page = (output / "report.html").read_text()
    # self-contained: every picture inlined (reference + runs per test case, one curve per model)
    assert page.count("src=\"data:image/png;base64,") == len(summary["subjects"]["test"]) * (1 + len(variants)) + len(ROLES)
    assert "http://" not in page and "https://" not in page


def test_demo_refuses_a_non_empty_output_folder(tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("user data")
    assert main(["demo", "-o", str(tmp_path), "--budget", "tiny", "-device", "cpu"]) == 1
    assert "not empty" in capsys.readouterr().err
    assert (tmp_path / "keep.txt").read_text() == "user data"


def test_headline_table_has_one_column_per_headline_metric():
    table = format_headline({"U-Net": {"Dice vertebrae": 0.91, "PQ": 0.5}})
    header, row = table.splitlines()
    assert all(column in header for column in HEADLINE_COLUMNS)
    assert "0.910" in row and "0.500" in row and "nan" in row


def test_budgets_estimate_their_duration():
    cpu = BUDGETS["cpu"]
    assert 5 * 60 < cpu.expected_seconds() <= 15 * 60  # the CPU demo promises <= 15 min on 2 cores
    assert BUDGETS["full"].expected_seconds() > cpu.expected_seconds()


def test_demo_trainers_carry_each_budgets_training(monkeypatch):
    """Every (budget, role) trains with its own registered trainer, which sets that budget."""
    import torch
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    from nnunetv2_symtc import trainers
    from nnunetv2_symtc.trainers.demo import DEMO_BASES, demo_trainer_name

    for base in DEMO_BASES.values():  # the budget is what the variant adds on top of its base
        monkeypatch.setattr(base, "__init__", lambda self, *args, **kwargs: None)
    names = set()
    for budget in BUDGETS.values():
        for role in ROLES:
            name = demo_trainer_name(role, budget.name)
            trainer = getattr(trainers, name)
            assert name in trainers.__all__ and issubclass(trainer, DEMO_BASES[role])
            assert issubclass(trainer, nnUNetTrainer) and name.endswith(f"_demo_{budget.name}")
            instance = trainer({}, "2d", "all", {}, torch.device("cpu"))
            epochs, iterations = budget.training[role]
            assert (instance.num_epochs, instance.num_iterations_per_epoch) == (epochs, iterations)
            assert instance.num_val_iterations_per_epoch == max(1, iterations // 10)
            names.add(name)
    assert len(names) == len(BUDGETS) * len(ROLES)
