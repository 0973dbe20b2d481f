"""``symtc doctor``: versions, devices, trainer resolution and nnU-Net paths."""
import os
import sys

from nnunetv2_symtc.cli import add_subcommand

NNUNET_PATH_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results", "nnUNet_extTrainer",
                    "nnUNet_def_n_proc", "nnUNet_n_proc_DA", "nnUNet_compile")


def register(subparsers) -> None:
    parser = add_subcommand(subparsers, "doctor",
                            "Print versions, devices, whether nnU-Net resolves each of our trainers, "
                            "and the nnU-Net environment variables. Exits 1 if a trainer does not resolve.",
                            "symtc doctor")
    parser.set_defaults(func=run)


def trainer_resolution() -> dict:
    """Our trainer name -> ``None`` if nnU-Net's own lookup returns our class, else the problem."""
    import contextlib
    import io

    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    from nnunetv2_symtc import trainers

    problems = {}
    for name in trainers.__all__:
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net narrates its search
                found = recursive_find_trainer_class_by_name(name)
            problems[name] = None if found is getattr(trainers, name) else f"resolved to {found.__module__}.{found.__name__}"
        except Exception as e:  # report every failure, whatever its kind
            problems[name] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    return problems


def run(args) -> int:
    import nnunetv2
    import torch
    from importlib.metadata import version

    import nnunetv2_symtc
    from nnunetv2_symtc.discovery import LOOKUP_FOLDER

    print(f"nnunetv2_symtc {nnunetv2_symtc.__version__} ({os.path.dirname(nnunetv2_symtc.__file__)})")
    print(f"python        {sys.version.split()[0]} ({sys.executable})")
    print(f"nnunetv2      {version('nnunetv2')} ({os.path.dirname(nnunetv2.__file__)})")
    print(f"torch         {torch.__version__} (CUDA build {torch.version.cuda or 'none'})")
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            print(f"device        cuda:{i} {torch.cuda.get_device_name(i)}")
    else:
        print("device        cpu only (no CUDA device visible)")
    print(f"cpu cores     {os.cpu_count()}")
    print("\nnnU-Net environment:")
    for var in NNUNET_PATH_VARS:
        print(f"  {var:20s} {os.environ.get(var, '(not set)')}")
    print("\ntrainers (resolved through nnU-Net's own lookup):")
    problems = trainer_resolution()
    for name, problem in problems.items():
        print(f"  {'ok  ' if problem is None else 'FAIL'} {name}" + (f": {problem}" if problem else ""))
    failed = [n for n, p in problems.items() if p]
    if failed:
        print(f"\n{len(failed)} trainer(s) do not resolve. Reinstall with `pip install -e .` or export "
              f"nnUNet_extTrainer={LOOKUP_FOLDER}")
        return 1
    return 0
