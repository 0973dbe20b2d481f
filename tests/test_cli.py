"""The ``symtc`` command's shared behaviour: errors, ``-device``, flag spellings, and the checks of
``ensemble -d``, ``import-checkpoint`` and ``evaluate`` that must not fall back silently."""
import json
import re
import shlex
from pathlib import Path

import numpy as np
import pytest

from nnunetv2_symtc import cli
from nnunetv2_symtc.cli import build_parser, main
from nnunetv2_symtc.devices import resolve_device
from nnunetv2_symtc.errors import InputError, InputFileError
from nnunetv2_symtc.io import Geometry, write_image


# ---------------------------------------------------------------------------------------------
# Errors: one line for input problems, a traceback for everything else
# ---------------------------------------------------------------------------------------------
def _doctor_raising(monkeypatch, error: Exception) -> None:
    import nnunetv2_symtc.cli.doctor as doctor

    def run(args):
        raise error

    monkeypatch.setattr(doctor, "run", run)


def test_input_error_is_one_line(monkeypatch, capsys):
    monkeypatch.delenv(cli.DEBUG_ENVIRONMENT_VARIABLE, raising=False)
    _doctor_raising(monkeypatch, InputError("scan.nii.gz: not a 3D image"))
    assert main(["doctor"]) == 1
    assert capsys.readouterr().err == "symtc doctor: error: scan.nii.gz: not a 3D image\n"


@pytest.mark.parametrize("error", [RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   ValueError("operands could not be broadcast together"),
                                   OSError(28, "No space left on device")])
def test_other_errors_keep_their_traceback(monkeypatch, capsys, error):
    """Bugs and environment failures (also ValueError/OSError/RuntimeError) are not input problems."""
    monkeypatch.delenv(cli.DEBUG_ENVIRONMENT_VARIABLE, raising=False)
    _doctor_raising(monkeypatch, error)
    assert main(["doctor"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(error).__name__}: {error}" in err
    assert "symtc doctor: unexpected error" in err


@pytest.mark.parametrize("argv, env", [(["--debug", "doctor"], None), (["doctor", "--debug"], None),
                                       (["doctor"], "1")])
def test_debug_shows_the_traceback_of_input_errors(monkeypatch, capsys, argv, env):
    if env is None:
        monkeypatch.delenv(cli.DEBUG_ENVIRONMENT_VARIABLE, raising=False)
    else:
        monkeypatch.setenv(cli.DEBUG_ENVIRONMENT_VARIABLE, env)
    _doctor_raising(monkeypatch, InputError("scan.nii.gz: not a 3D image"))
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.endswith("symtc doctor: error: scan.nii.gz: not a 3D image\n")


def test_our_input_checks_raise_input_errors(tmp_path, capsys, monkeypatch):
    """Real input problems of a command end in one line naming the path."""
    monkeypatch.delenv(cli.DEBUG_ENVIRONMENT_VARIABLE, raising=False)
    assert main(["evaluate", "-ref", str(tmp_path / "missing"), "-pred", str(tmp_path), "-o", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == f"symtc evaluate: error: {tmp_path / 'missing'}: not a folder\n"
    from nnunetv2_symtc.io import read_image

    (tmp_path / "broken.nii.gz").write_bytes(b"not an image")
    with pytest.raises(InputFileError, match="broken.nii.gz: cannot be read"):
        read_image(tmp_path / "broken.nii.gz")
    with pytest.raises(OSError):  # callers that catch OSError keep working
        read_image(tmp_path / "broken.nii.gz")


# ---------------------------------------------------------------------------------------------
# -device: one default (auto) everywhere, resolved by one function and printed
# ---------------------------------------------------------------------------------------------
REQUIRED_ARGS = {
    "predict": ["-i", "x", "-o", "y", "--semantic-model", "s", "--instance-model", "m"],
    "ensemble": ["-i", "x", "-o", "y", "-m", "model"],
    "robustness": ["-m", "model", "-i", "x", "-ref", "r", "-o", "y"],
    "demo": [],
    "evaluate": ["-ref", "r", "-pred", "p", "-o", "o"],
}
"""Smallest argument lists each command parses."""


@pytest.mark.parametrize("command", ["predict", "ensemble", "robustness", "demo"])
def test_device_defaults_to_auto_everywhere(command):
    args = build_parser().parse_args([command, *REQUIRED_ARGS[command]])
    assert args.device == "auto"
    assert build_parser().parse_args([command, *REQUIRED_ARGS[command], "-device", "cpu"]).device == "cpu"


def test_device_resolution_and_printing(monkeypatch, capsys):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(InputError, match="choose one of"):
        resolve_device("tpu")
    assert cli.selected_device(build_parser().parse_args(["demo"])) == "cpu"
    assert capsys.readouterr().out == "device: cpu (auto)\n"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


# ---------------------------------------------------------------------------------------------
# Flag spellings: nnU-Net's where nnU-Net has the flag, kebab-case for ours, old spellings hidden
# ---------------------------------------------------------------------------------------------
RENAMED = [  # (command, new spelling, old spelling, value or None for a switch, attribute)
    ("predict", "--save_probabilities", "--save-probabilities", None, "save_probabilities"),
    ("robustness", "--max-shift-mm", "--max_shift_mm", "6", "max_shift_mm"),
    ("robustness", "--file-ending", "--file_ending", ".mha", "file_ending"),
    ("robustness", "--intensity-scales", "--intensity_scales", "3", "intensity_scales"),
    ("robustness", "--max-cases", "--max_cases", "2", "max_cases"),
    ("evaluate", "--symtc-compat", "--symtc_compat", None, "symtc_compat"),
    ("evaluate", "--spider-array-spacing", "--spider_array_spacing", None, "spider_array_spacing"),
    ("evaluate", "--no-distances", "--no_distances", None, "no_distances"),
]


@pytest.mark.parametrize("command, new, old, value, attribute", RENAMED)
def test_old_and_new_flag_spellings_parse_alike(command, new, old, value, attribute, capsys):
    parser = build_parser()
    default = getattr(parser.parse_args([command, *REQUIRED_ARGS[command]]), attribute)
    extra = [] if value is None else [value]
    parsed_new = getattr(parser.parse_args([command, *REQUIRED_ARGS[command], new, *extra]), attribute)
    parsed_old = getattr(parser.parse_args([command, *REQUIRED_ARGS[command], old, *extra]), attribute)
    assert parsed_new == parsed_old != default
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--help"])
    shown = capsys.readouterr().out
    assert new in shown and old not in shown


def test_readme_symtc_commands_parse():
    """Every ``symtc`` line of the README's code blocks and command table uses current flags."""
    text = (Path(__file__).parents[1] / "README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, flags=re.S)
    commands = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()
                if line.strip().startswith("symtc ")]
    commands += re.findall(r"\| `(symtc [^`]*)` \|$", text, flags=re.M)
    assert len(commands) >= 15
    parser = build_parser()
    for command in commands:
        argv = shlex.split(command)[1:]
        assert parser.parse_args(argv).command == argv[0], command


def test_nnunet_flag_spellings_are_kept():
    """Flags nnU-Net's predictor has keep its spelling (a copied nnUNetv2_predict line works)."""
    args = build_parser().parse_args(["predict", *REQUIRED_ARGS["predict"], "-f", "0", "-chk", "checkpoint_best.pth",
                                      "-step_size", "0.75", "--disable_tta", "-npp", "2", "-nps", "2",
                                      "-num_parts", "2", "-part_id", "1", "--save_probabilities"])
    assert (args.chk, args.step_size, args.disable_tta, args.npp, args.num_parts, args.part_id) == \
        ("checkpoint_best.pth", 0.75, True, 2, 2, 1)


# ---------------------------------------------------------------------------------------------
# ensemble -d: a recorded postprocessing file that is missing is an error, not a silent skip
# ---------------------------------------------------------------------------------------------
@pytest.fixture
def recommended_ensemble(tmp_path, monkeypatch):
    """A results folder whose inference_information.json names one model and a postprocessing file
    (not created); ``run_ensemble`` is replaced by a recorder of its postprocessing argument."""
    import nnunetv2.paths

    from nnunetv2_symtc.inference import ensemble

    name = "Dataset950_Fake"
    results = tmp_path / "results"
    model = results / name / "nnUNetTrainer__nnUNetPlans__2d"
    model.mkdir(parents=True)
    postprocessing = model / "crossval_results_folds_0" / "postprocessing.pkl"
    (results / name / "inference_information.json").write_text(json.dumps({
        "folds": [0], "best_model_or_ensemble": {
            "selected_model_or_models": [{"trainer": "nnUNetTrainer", "plans_identifier": "nnUNetPlans",
                                          "configuration": "2d"}],
            "postprocessing_file": str(postprocessing)}}))
    monkeypatch.setattr(nnunetv2.paths, "nnUNet_results", str(results))
    calls = []

    def record(folders, input_folder, output_folder, folds, checkpoint, device, disable_tta, num_processes,
               postprocessing_file):
        calls.append(postprocessing_file)
        return {"ensemble": Path(output_folder)}

    monkeypatch.setattr(ensemble, "run_ensemble", record)
    argv = ["ensemble", "-d", name, "-i", str(tmp_path), "-o", str(tmp_path / "out"), "-device", "cpu"]
    return argv, postprocessing, calls


def test_ensemble_refuses_a_missing_postprocessing_file(recommended_ensemble, capsys):
    argv, postprocessing, calls = recommended_ensemble
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(postprocessing) in err and "--no-postprocessing" in err and calls == []
    assert main([*argv, "--no-postprocessing"]) == 0
    assert calls == [None] and "postprocessing: skipped (--no-postprocessing)" in capsys.readouterr().out
    postprocessing.parent.mkdir()
    postprocessing.write_bytes(b"")
    assert main(argv) == 0
    assert calls[-1] == postprocessing and f"postprocessing: {postprocessing}" in capsys.readouterr().out


def test_no_postprocessing_needs_the_recommended_ensemble(tmp_path, capsys):
    assert main(["ensemble", "-i", "a", "b", "-o", str(tmp_path), "--no-postprocessing"]) == 1
    assert "--no-postprocessing applies to -d" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# import-checkpoint: the printed commands match the imported width
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("width_name, trainer, plans", [("paper", "SymTCTrainer_paper", "nnUNetPlans_SymTC"),
                                                         ("small", "SymTCTrainer_small", "nnUNetPlans_SymTC_small")])
def test_import_checkpoint_prints_plans_and_trainer_of_its_width(monkeypatch, capsys, tmp_path, width_name, trainer,
                                                                 plans):
    from nnunetv2_symtc.cli import import_checkpoint
    from nnunetv2_symtc.networks import reference_checkpoint
    from nnunetv2_symtc.networks.symtc import PAPER_WIDTH, SMALL_WIDTH

    width = dict(PAPER_WIDTH if width_name == "paper" else SMALL_WIDTH, input_channels=1, num_classes=12,
                 num_layers=(2, 2, 2, 2))
    assert import_checkpoint.width_name(width) == width_name
    assert import_checkpoint.width_name({**width, "num_layers": (1, 2, 1, 1)}) is None
    monkeypatch.setattr(reference_checkpoint, "import_reference_checkpoint", lambda reference, output: width)
    out = str(tmp_path / "w.pth")
    assert main(["import-checkpoint", "--reference", "best.pth", "-o", out]) == 0
    printed = capsys.readouterr().out
    assert f"symtc plan-symtc -d DATASET --width {width_name} -o {plans}\n" in printed
    assert f"nnUNetv2_train DATASET 2d FOLD -tr {trainer} -p {plans} -pretrained_weights {out}" in printed
    other = "SymTCTrainer_small" if width_name == "paper" else "SymTCTrainer_paper"
    assert other not in printed


# ---------------------------------------------------------------------------------------------
# evaluate: files are paired on one grid (shape, spacing, origin, direction)
# ---------------------------------------------------------------------------------------------
def _write_pair(tmp_path: Path, prediction_geometry: Geometry) -> tuple:
    reference_geometry = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    mask = np.zeros((4, 8, 8), dtype=np.uint8)
    mask[1:3, 2:6, 2:6] = 1
    ref, pred = tmp_path / "ref", tmp_path / "pred"
    ref.mkdir(), pred.mkdir()
    write_image(ref / "case.nii.gz", mask, reference_geometry)
    write_image(pred / "case.nii.gz", mask, prediction_geometry)
    return ref, pred


@pytest.mark.parametrize("field, value", [("origin_xyz", (5.0, 0.0, 0.0)),
                                          ("direction", (0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0))])
def test_evaluate_refuses_other_origin_or_direction_unless_ignored(tmp_path, capsys, field, value):
    from dataclasses import replace

    base = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    ref, pred = _write_pair(tmp_path, replace(base, **{field: value}))
    argv = ["evaluate", "-ref", str(ref), "-pred", str(pred), "-o", str(tmp_path / "ev"), "--no-distances"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert str(ref / "case.nii.gz") in err and str(pred / "case.nii.gz") in err
    assert field.split("_")[0] in err and "--ignore-geometry" in err
    assert main([*argv, "--ignore-geometry"]) == 0
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert summary["metric_per_case"][0]["metrics"]["1"]["Dice"] == 1.0


def test_evaluate_accepts_a_position_within_tolerance_and_never_another_spacing(tmp_path, capsys):
    from nnunetv2_symtc.evaluation.report import check_same_grid

    base = Geometry((2.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    nearly = Geometry((2.0, 1.0, 1.0), (1e-4, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    check_same_grid("r", (4, 8, 8), base, "p", (4, 8, 8), nearly)
    coarser = Geometry((3.0, 1.0, 1.0), (0.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))
    with pytest.raises(InputError, match=r"^p: not on the grid of r: spacing \(3.0, 1.0, 1.0\)") as error:
        check_same_grid("r", (4, 8, 8), base, "p", (4, 8, 8), coarser, check_position=False)
    assert "--ignore-geometry" not in str(error.value)
