"""The foundation smoke run: nnU-Net's own commands, in a fresh-shell environment, with our trainer.

plan+preprocess (the shared fixture) -> ``nnUNetv2_train`` 1 tiny epoch on CPU -> ``nnUNetv2_predict``
-> ``nnUNetv2_evaluate_folder``. The trainer is resolved by name through nnU-Net's lookup in a
subprocess whose environment has no ``nnUNet_extTrainer`` export.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
SMOKE_TRAINER = "nnUNetTrainerSizeAdaptiveCE_tiny"


def run_nnunet(*command: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    result = subprocess.run([str(BIN / command[0]), *command[1:]], env=env, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.mark.slow
def test_train_predict_evaluate_through_nnunet_commands(tiny_dataset_3d, tmp_path):
    ds = tiny_dataset_3d
    run_nnunet("nnUNetv2_train", str(ds.dataset_id), ds.configuration, "0", "-tr", SMOKE_TRAINER, "-device", "cpu")
    model = Path(os.environ["nnUNet_results"]) / ds.dataset_name / f"{SMOKE_TRAINER}__{ds.plans}__{ds.configuration}"
    assert (model / "fold_0" / "checkpoint_final.pth").is_file()

    splits = json.loads((ds.preprocessed / "splits_final.json").read_text())
    case = splits[0]["val"][0]
    images = tmp_path / "images"
    images.mkdir()
    source = next((ds.raw / "imagesTr").glob(f"{case}_0000.*"))
    (images / source.name).symlink_to(source)
    predictions = tmp_path / "pred"
    run_nnunet("nnUNetv2_predict", "-i", str(images), "-o", str(predictions), "-d", str(ds.dataset_id),
               "-c", ds.configuration, "-f", "0", "-tr", SMOKE_TRAINER, "-device", "cpu", "--disable_tta")
    prediction = next(predictions.glob(f"{case}.*"))

    run_nnunet("nnUNetv2_evaluate_folder", str(ds.raw / "labelsTr"), str(predictions),
               "-djfile", str(ds.raw / "dataset.json"), "-pfile", str(model / "plans.json"), "--chill")
    summary = json.loads((predictions / "summary.json").read_text())
    assert [c["prediction_file"] for c in summary["metric_per_case"]] == [str(prediction)]
    labels = json.loads((ds.raw / "dataset.json").read_text())["labels"]
    assert set(summary["mean"]) == {str(v) for k, v in labels.items() if k not in ("background", "ignore")}
