"""Test-wide settings: tiny process counts for nnU-Net, and nnU-Net folders in a session tmp dir.

nnU-Net reads its environment variables at call time, so setting them here (before any test
runs) is enough; subprocesses inherit them.
"""
import os
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

os.environ.setdefault("nnUNet_def_n_proc", "1")
os.environ.setdefault("nnUNet_n_proc_DA", "1")  # 0 breaks nnU-Net 2.8.1 planning (set_num_threads(0))
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


@dataclass(frozen=True)
class TinyDataset:
    """A planned and preprocessed nnU-Net dataset (one of the shared session fixtures)."""

    dataset_id: int
    dataset_name: str
    configuration: str
    plans: str = "nnUNetPlans"

    @property
    def raw(self) -> Path:
        return Path(os.environ["nnUNet_raw"]) / self.dataset_name

    @property
    def preprocessed(self) -> Path:
        return Path(os.environ["nnUNet_preprocessed"]) / self.dataset_name


TINY_DATASET_ID = 901
TINY_SUBJECTS = 6


@pytest.fixture(scope="session")
def tiny_dataset(nnunet_dirs, tmp_path_factory) -> TinyDataset:
    """The one shared tiny dataset: phantom subjects in SPINEPS format, converted by our converter
    (SPINEPS semantic labels, PIR), planned and preprocessed by nnU-Net for ``2d`` and ``3d_fullres``."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprints, plan_experiments, preprocess

    from nnunetv2_symtc.dataset_conversion.spineps import convert_spineps
    from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spineps

    source = tmp_path_factory.mktemp("phantom_spineps")
    write_spineps(source, [(f"{i:02d}", generate_subject(i, PhantomConfig.tiny())) for i in range(TINY_SUBJECTS)])
    dataset_folder = convert_spineps(source, TINY_DATASET_ID, "TinySpine", num_processes=1)
    extract_fingerprints([TINY_DATASET_ID], num_processes=1, check_dataset_integrity=True, show_progress_bar=False)
    plan_experiments([TINY_DATASET_ID])
    preprocess([TINY_DATASET_ID], configurations=("2d", "3d_fullres"), num_processes=(1, 1), show_progress_bar=False)
    return TinyDataset(TINY_DATASET_ID, Path(dataset_folder).name, "3d_fullres")


@pytest.fixture(scope="session")
def tiny_dataset_3d(tiny_dataset) -> TinyDataset:
    """``tiny_dataset`` with the ``3d_fullres`` configuration."""
    return tiny_dataset


@pytest.fixture(scope="session")
def tiny_dataset_2d(tiny_dataset) -> TinyDataset:
    """``tiny_dataset`` with the ``2d`` configuration (sagittal slices)."""
    return replace(tiny_dataset, configuration="2d")


@pytest.fixture(scope="session")
def tptbox_sample():
    """(paths, semantic, instance, geometry) of tptbox's real cervical MRI sample (PIR, C5-C7), read
    from the installed ``tptbox`` package (never copied into this repository)."""
    from nnunetv2_symtc.io import read_image

    tptbox = pytest.importorskip("TPTBox")
    folder = Path(os.path.dirname(tptbox.__file__)) / "tests" / "sample_mri"
    paths = {"image": folder / "sub-mri_label-6_T2w.nii.gz",
             "semantic": folder / "sub-mri_seg-subreg_label-6_msk.nii.gz",
             "instance": folder / "sub-mri_seg-vert_label-6_msk.nii.gz"}
    semantic, geometry = read_image(paths["semantic"])
    instance, _ = read_image(paths["instance"])
    assert geometry.orientation == "PIR"
    return paths, semantic, instance, geometry
