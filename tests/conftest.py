"""Test-wide settings: tiny process counts for nnU-Net, and nnU-Net folders in a session tmp dir.

nnU-Net reads its environment variables at call time, so setting them here (before any test
runs) is enough; subprocesses inherit them.
"""
import os

import pytest

os.environ.setdefault("nnUNet_def_n_proc", "1")
os.environ.setdefault("nnUNet_n_proc_DA", "0")
os.environ.setdefault("nnUNet_compile", "f")
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def nnunet_dirs(tmp_path_factory):
    """nnUNet_raw / nnUNet_preprocessed / nnUNet_results for this test session (also exported)."""
    root = tmp_path_factory.mktemp("nnunet")
    dirs = {name: root / name for name in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")}
    for name, path in dirs.items():
        path.mkdir()
        os.environ[name] = str(path)
    return dirs
