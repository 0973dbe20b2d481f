"""Packaging, trainer discovery through nnU-Net's own lookup, the CLI, and budget variants."""
import multiprocessing
import os
import pickle
import re
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from nnunetv2_symtc import trainers
from nnunetv2_symtc.discovery import ENV_VAR, LOOKUP_FOLDER, register_with_nnunet
from nnunetv2_symtc.trainers.budget import budget_variant

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def clean_env(**extra) -> dict:
    """The environment of a fresh shell: no nnUNet_extTrainer export, nothing from this session's hook."""
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    env.update(extra)
    return env


def readme_trainer_names() -> list:
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- trainers:start -->")[1].split("<!-- trainers:end -->")[0]
    return re.findall(r"^\| `([A-Za-z0-9_]+)` \|", block, flags=re.M)


def test_readme_lists_exactly_the_registered_trainers():
    assert trainers.__all__, "no trainer is registered"
    assert sorted(readme_trainer_names()) == sorted(trainers.__all__)
    assert all("__" not in name for name in trainers.__all__)


def test_every_registered_name_is_a_trainer_defined_in_our_package():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    for name in trainers.__all__:
        cls = getattr(trainers, name)
        assert issubclass(cls, nnUNetTrainer) and cls.__name__ == name
        assert cls.__module__.startswith("nnunetv2_symtc.trainers."), cls.__module__


def test_register_with_nnunet_keeps_user_paths_first_and_is_idempotent():
    env = {ENV_VAR: "/my/trainers"}
    register_with_nnunet(env)
    register_with_nnunet(env)
    assert env[ENV_VAR].split(os.pathsep) == ["/my/trainers", LOOKUP_FOLDER]
    empty = {}
    register_with_nnunet(empty)
    assert empty[ENV_VAR] == LOOKUP_FOLDER


def test_startup_hook_sets_ext_trainer_in_a_fresh_interpreter():
    out = subprocess.run([sys.executable, "-c", f"import os; print(os.environ['{ENV_VAR}'])"],
                         env=clean_env(), capture_output=True, text=True, check=True).stdout
    assert LOOKUP_FOLDER in out.strip().split(os.pathsep)


def test_lookup_folder_holds_a_single_reexport_module():
    modules = sorted(p.name for p in Path(LOOKUP_FOLDER).glob("*.py") if p.name != "__init__.py")
    assert modules == ["nnunetv2_symtc_trainers.py"]


def test_doctor_resolves_every_trainer_in_a_fresh_shell():
    result = subprocess.run([str(BIN / "symtc"), "doctor"], env=clean_env(), capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in trainers.__all__:
        assert re.search(rf"^\s+ok\s+{name}$", result.stdout, flags=re.M), f"{name} not resolved:\n{result.stdout}"


def test_doctor_fails_when_a_trainer_does_not_resolve(tmp_path):
    # A user ext folder (searched before ours) whose module fails to import breaks nnU-Net's lookup.
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "aaa_broken.py").write_text("raise ImportError('deliberately broken trainer module')\n")
    result = subprocess.run([str(BIN / "symtc"), "doctor"], env=clean_env(**{ENV_VAR: str(broken)}),
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "FAIL" in result.stdout and "deliberately broken" in result.stdout


def _resolve_in_child(name: str, pickled_class: bytes, queue) -> None:
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    cls = recursive_find_trainer_class_by_name(name)
    queue.put((cls.__module__, cls.__qualname__, pickle.loads(pickled_class) is cls))


def test_spawned_process_resolves_trainer_by_name_and_unpickles_it():
    """The proxy for nnU-Net's DDP ranks, which re-resolve the trainer by name in spawned processes."""
    name = trainers.__all__[0]
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    child = ctx.Process(target=_resolve_in_child, args=(name, pickle.dumps(getattr(trainers, name)), queue))
    child.start()
    module, qualname, same_class = queue.get(timeout=120)
    child.join(timeout=60)
    assert child.exitcode == 0
    assert module.startswith("nnunetv2_symtc.trainers.") and qualname == name
    assert same_class, "the class resolved by nnU-Net in the child is not the one that unpickles"


def test_budget_variant_sets_budget_name_module_and_pickles():
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    variant = budget_variant(nnUNetTrainer, "3x7", num_epochs=3, iterations_per_epoch=7, val_iterations_per_epoch=2)
    assert variant.__name__ == "nnUNetTrainer_3x7" and variant.__module__ == __name__
    assert issubclass(variant, nnUNetTrainer) and "3 epoch" in variant.__doc__
    with pytest.raises(ValueError, match="__"):
        budget_variant(nnUNetTrainer, "_bad", num_epochs=1)


def test_cli_lists_subcommands_and_every_subcommand_has_an_example():
    from nnunetv2_symtc.cli import SUBCOMMAND_MODULES

    top = subprocess.run([sys.executable, "-m", "nnunetv2_symtc", "--help"], capture_output=True, text=True, check=True)
    for module in SUBCOMMAND_MODULES:
        command = module.replace("_", "-")
        assert command in top.stdout
        sub = subprocess.run([sys.executable, "-m", "nnunetv2_symtc", command, "--help"],
                             capture_output=True, text=True, check=True).stdout
        assert f"example:\n  symtc {command}" in sub, f"`symtc {command} --help` shows no example"


@pytest.mark.slow
def test_regular_install_maps_trainers_and_conversion_into_the_package(tmp_path):
    """A non-editable ``pip install .`` into a separate venv: package mapping, hook and `symtc` work."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    # Reuse this environment's dependencies (torch, nnunetv2) without its editable finder, and
    # install with this environment's pip and setuptools into the new prefix.
    (site / "reuse_test_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index", "--ignore-installed",
                    "--prefix", str(venv), str(REPO)], check=True, env=clean_env(PIP_NO_INPUT="1"))
    assert (site / "nnunetv2_symtc" / "trainers" / "__init__.py").is_file()
    assert (site / "nnunetv2_symtc" / "dataset_conversion" / "__init__.py").is_file()
    assert not (site / "trainers").exists() and not (site / "dataset_conversion").exists()
    assert (site / "nnunetv2_symtc-nnunet.pth").is_file()
    assert (venv / "bin" / "symtc").is_file()
    where = subprocess.run([python, "-c", "import nnunetv2_symtc.trainers as t; print(t.__file__)"],
                           env=clean_env(), capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert where.startswith(str(site))
    doctor = subprocess.run([python, "-m", "nnunetv2_symtc", "doctor"], env=clean_env(), capture_output=True,
                            text=True, cwd=tmp_path)
    assert doctor.returncode == 0, doctor.stdout + doctor.stderr
    assert str(site / "nnunetv2_symtc" / "nnunet_lookup") in doctor.stdout
