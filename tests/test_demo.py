"""``symtc demo`` end to end at the ``tiny`` budget: the README's main command, wired through every
stage, and its models shared through nnU-Net's export and install commands."""
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.demo import BUDGETS, HEADLINE_COLUMNS, PHASE1_VARIANTS, ROLES, _variant_folder, format_headline
from nnunetv2_symtc.io import read_image
from nnunetv2_symtc.nnunet_runs import NNUNET_FOLDERS

BIN = Path(sys.executable).parent


def export_and_install(model: Path, nnunet_root: Path, fresh_results: Path) -> Path:
    """``nnUNetv2_export_model_to_zip`` of a fold-``all`` model folder ``Trainer__Plans__config``
    trained under ``nnunet_root``, then ``nnUNetv2_install_pretrained_model_from_zip`` into
    ``fresh_results``; returns the installed model folder."""
    trainer, plans, configuration = model.name.split("__")
    dataset = model.parent.name
    archive = fresh_results.parent / f"{dataset}_{model.name}.zip"
    env = {**os.environ, **{k: str(nnunet_root / k) for k in NNUNET_FOLDERS}}
    subprocess.run([str(BIN / "nnUNetv2_export_model_to_zip"), "-d", dataset, "-o", str(archive), "-c", configuration,
                    "-tr", trainer, "-p", plans, "-f", "all"], env=env, check=True, capture_output=True)
    names = set(zipfile.ZipFile(archive).namelist())
    for file in ("plans.json", "dataset.json", "dataset_fingerprint.json", "fold_all/checkpoint_final.pth",
                 "fold_all/validation/summary.json"):
        assert f"{dataset}/{model.name}/{file}" in names, file
    fresh_results.mkdir(exist_ok=True)
    subprocess.run([str(BIN / "nnUNetv2_install_pretrained_model_from_zip"), str(archive)],
                   env={**env, "nnUNet_results": str(fresh_results)}, check=True, capture_output=True)
    return fresh_results / dataset / model.name


@pytest.mark.slow
def test_demo_runs_every_stage_and_writes_its_outputs(tmp_path, monkeypatch):
    output = tmp_path / "demo"
    for variable in NNUNET_FOLDERS:
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

    assert set(summary["stage_peak_memory_gib"]) == set(stages)
    assert all(0 < peak["process"] < 64 for peak in summary["stage_peak_memory_gib"].values())

    # every model the demo trained exports, installs into a fresh results folder and predicts there
    # as it did in the demo (same weights, same code: the same masks)
    fresh = tmp_path / "fresh_results"
    installed = {role: export_and_install(Path(folder), output / "nnunet", fresh)
                 for role, folder in summary["models"].items()}
    again = tmp_path / "again"
    name = "U-Net (size-adaptive CE)"
    assert main(["predict", "-i", str(output / "test_images"), "-o", str(again), "--semantic-model",
                 str(installed["unet"]), "--instance-model", str(installed["phase2"]), "-f", "all",
                 "-device", "cpu"]) == 0
    for case in summary["subjects"]["test"]:
        for suffix in ("_seg-spine_msk.nii.gz", "_seg-vert_msk.nii.gz"):
            file = f"sub-{case}_T2w{suffix}"
            assert np.array_equal(read_image(again / file)[0],
                                  read_image(output / "two_phase" / _variant_folder(name) / file)[0]), file

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
