"""Ensembles across trainers and configurations, find_best_configuration, model sharing, robustness
on real (tiny) nnU-Net models trained on the shared phantom dataset.

Slow as a module: the shared fixture trains two models (about a minute of CPU on two free cores)
and find_best_configuration runs nnU-Net's process pools (about 50 s).
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.inference import ensemble as E
from nnunetv2_symtc.io import read_image

pytestmark = pytest.mark.slow

NNUNET_TINY_BUDGET = dict(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1)
MEMBERS = (("nnUNetTrainer", "3d_fullres"), ("SymTCTrainer_tiny", "2d"))
"""nnU-Net's own trainer (3D) and one of ours (2D): different trainers *and* configurations."""


def train_fold0(dataset_id: int, trainer_name: str, configuration: str) -> Path:
    """Train fold 0 through nnU-Net's own trainer lookup and export validation probabilities.

    nnU-Net's ``nnUNetTrainer`` gets the tiny budget on the instance (its checkpoint still names
    ``nnUNetTrainer``, so prediction resolves it like any nnU-Net model)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), configuration, 0, trainer_name, "nnUNetPlans",
                                    device=torch.device("cpu"))
    if trainer_name == "nnUNetTrainer":
        for key, value in NNUNET_TINY_BUDGET.items():
            setattr(trainer, key, value)
    trainer.run_training()
    trainer.perform_actual_validation(save_probabilities=True)
    return Path(trainer.output_folder).parent


@pytest.fixture(scope="module")
def trained(tiny_dataset, tmp_path_factory):
    """Two trained model folders plus a folder with one raw test image (nnU-Net naming)."""
    folders = [train_fold0(tiny_dataset.dataset_id, tr, c) for tr, c in MEMBERS]
    images = tmp_path_factory.mktemp("test_images")
    ending = json.loads((tiny_dataset.raw / "dataset.json").read_text())["file_ending"]
    for source in sorted((tiny_dataset.raw / "imagesTr").glob(f"*_0000{ending}"))[:1]:
        shutil.copy(source, images / source.name)
    return tiny_dataset, folders, images, ending


@pytest.fixture(scope="module")
def ensembled(trained, tmp_path_factory):
    dataset, folders, images, ending = trained
    out = tmp_path_factory.mktemp("ensemble")
    result = E.run_ensemble(folders, images, out, folds=(0,), disable_tta=True, progress=False)
    return dataset, folders, images, ending, result


def test_ensemble_of_two_trainers_averages_probabilities(ensembled):
    dataset, folders, images, ending, result = ensembled
    members = [result["members"] / f.name for f in folders]
    cases = sorted(p.name[: -len(f"_0000{ending}")] for p in images.iterdir())
    for case in cases:
        image, _ = read_image(images / f"{case}_0000{ending}")
        probabilities = [np.load(m / f"{case}.npz")["probabilities"].astype(np.float32) for m in members]
        assert all(p.shape == (probabilities[0].shape[0], *image.shape) for p in probabilities)
        assert not np.allclose(probabilities[0], probabilities[1])  # really two different models
        expected = np.argmax((probabilities[0] + probabilities[1]) / 2, axis=0)
        ensemble, _ = read_image(result["ensemble"] / f"{case}{ending}")
        assert np.array_equal(ensemble, expected)
    assert json.loads((result["ensemble"] / "ensemble_members.json").read_text()) == [str(m) for m in members]


def test_folder_ensemble_refuses_mismatches(ensembled, tmp_path):
    _, folders, _, _, result = ensembled
    good = [result["members"] / f.name for f in folders]
    out = tmp_path / "out"
    assert main(["ensemble", "-i", *map(str, good), "-o", str(out), "--save_probabilities"]) == 0
    assert len(list(out.glob("*.npz"))) == 1

    extra = tmp_path / "extra"
    shutil.copytree(good[1], extra)
    case = next(extra.glob("*.npz"))
    shutil.copy(case, extra / "unknown_case.npz")
    shutil.copy(case.with_suffix(".pkl"), extra / "unknown_case.pkl")
    with pytest.raises(ValueError, match=f"{extra}: cases differ .*extra: \\['unknown_case'\\]"):
        E.check_members([good[0], extra])
    case.with_suffix(".pkl").unlink()
    with pytest.raises(OSError, match=f"{extra}: .npz without the matching .pkl"):
        E.check_members([good[0], extra])

    relabelled = tmp_path / "relabelled"
    shutil.copytree(good[1], relabelled)
    dataset_json = json.loads((relabelled / "dataset.json").read_text())
    dataset_json["labels"] = {"background": 0, "something_else": 1}
    (relabelled / "dataset.json").write_text(json.dumps(dataset_json))
    with pytest.raises(ValueError, match=f"{relabelled}: labels"):
        E.check_members([good[0], relabelled])

    reshaped = tmp_path / "reshaped"
    shutil.copytree(good[1], reshaped)
    case = next(reshaped.glob("*.npz"))
    probabilities = np.load(case)["probabilities"]
    np.savez_compressed(case, probabilities=probabilities[:, :-1])
    with pytest.raises(ValueError, match=f"{reshaped}: probabilities of {case.stem} have shape"):
        E.check_members([good[0], reshaped])
    assert main(["ensemble", "-i", str(good[0]), str(reshaped), "-o", str(tmp_path / "x")]) == 1


def test_find_best_configuration_with_our_trainer_and_recommended_ensemble(trained, tmp_path, capsys):
    from nnunetv2.evaluation.find_best_configuration import find_best_configuration

    dataset, folders, images, ending = trained
    models = [{"plans": "nnUNetPlans", "configuration": c, "trainer": tr} for tr, c in MEMBERS]
    info = find_best_configuration(dataset.dataset_id, models, allow_ensembling=True, num_processes=1, folds=(0,))
    assert set(info["all_results"]) >= {f"{tr}__nnUNetPlans__{c}" for tr, c in MEMBERS}
    assert any(k.startswith("ensemble___") for k in info["all_results"])
    instructions = Path(os.environ["nnUNet_results"]) / dataset.dataset_name / "inference_instructions.txt"
    assert "nnUNetv2_predict" in instructions.read_text()
    recommended, folds, postprocessing = E.recommended_members(dataset.dataset_id)
    assert folds == (0,) and all(f.is_dir() for f in recommended)
    assert postprocessing is not None and postprocessing.is_file()  # nnU-Net always determines postprocessing
    assert main(["ensemble", "-d", str(dataset.dataset_id), "-i", str(images), "-o", str(tmp_path / "rec"),
                 "--disable_tta", "-device", "cpu"]) == 0
    assert len(list((tmp_path / "rec" / "postprocessed").glob(f"*{ending}"))) == 1


def test_export_and_install_model_zip_in_fresh_results(trained, tmp_path):
    """nnUNetv2_export_model_to_zip / nnUNetv2_install_pretrained_model_from_zip (their commands, in new
    processes) with our trainer; the model installed into an empty results folder predicts exactly
    like the original."""
    dataset, folders, images, ending = trained
    ours = folders[1]
    trainer, plans, configuration = ours.name.split("__")
    zip_file = tmp_path / "model.zip"
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(__file__).parents[1]), os.environ.get("PYTHONPATH", "")])}
    subprocess.run([str(bin_dir / "nnUNetv2_export_model_to_zip"), "-d", str(dataset.dataset_id), "-o", str(zip_file),
                    "-c", configuration, "-tr", trainer, "-p", plans, "-f", "0", "--not_strict"],
                   check=True, env=env, capture_output=True)
    fresh = tmp_path / "fresh_results"
    fresh.mkdir()
    env_fresh = {**env, "nnUNet_results": str(fresh)}
    subprocess.run([str(bin_dir / "nnUNetv2_install_pretrained_model_from_zip"), str(zip_file)],
                   check=True, env=env_fresh, capture_output=True)
    installed = fresh / dataset.dataset_name / ours.name
    assert (installed / "fold_0" / "checkpoint_final.pth").is_file()
    installed_prediction = E.predict_member(installed, images, tmp_path / "pred", folds=(0,), disable_tta=True,
                                            progress=False)
    original_prediction = E.predict_member(ours, images, tmp_path / "ref", folds=(0,), disable_tta=True,
                                           progress=False)
    cases = sorted(installed_prediction.glob(f"*{ending}"))
    assert cases
    for case in cases:
        assert np.array_equal(read_image(case)[0], read_image(original_prediction / case.name)[0])


def test_robustness_cli_with_a_trained_model(trained, tmp_path, capsys):
    dataset, folders, images, ending = trained
    labels = tmp_path / "labels"
    labels.mkdir()
    for image in sorted(images.glob(f"*_0000{ending}"))[:1]:
        case = image.name[: -len(f"_0000{ending}")]
        shutil.copy(dataset.raw / "labelsTr" / f"{case}{ending}", labels / f"{case}{ending}")
    out = tmp_path / "robustness"
    assert main(["robustness", "-m", str(folders[1]), "-i", str(images), "-ref", str(labels), "-o", str(out),
                 "-f", "0", "--disable_tta", "--max_cases", "1", "--max_shift_mm", "6", "--steps", "1",
                 "--directions", "superior", "anterior", "--intensity_scales", "2", "--noise", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "superior" in printed and "noise" in printed
    assert (out / "robustness.png").is_file()
    assert len((out / "robustness_cases.csv").read_text().strip().splitlines()) == 1 + 2 * 2 + 1 + 1
    summary = {(r.split(",")[0], r.split(",")[2]): r for r in (out / "robustness.csv").read_text().splitlines()[1:]}
    assert ("shift", "6.0") in summary and ("noise", "0.2") in summary
