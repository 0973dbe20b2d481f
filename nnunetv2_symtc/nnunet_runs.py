"""nnU-Net runs from Python, as the demo and the benchmarks use them: the nnU-Net folders of a run,
process counts, planning and preprocessing, and training a model that can be shared.

A model trained by ``train_fold_all`` has everything ``nnUNetv2_export_model_to_zip`` packs
(``plans.json``, ``dataset.json``, ``dataset_fingerprint.json``, the checkpoint, ``progress.png``
and ``fold_all/validation/summary.json``), so it exports, installs
(``nnUNetv2_install_pretrained_model_from_zip``) and predicts in another results folder.
"""
from __future__ import annotations

import os
from pathlib import Path

NNUNET_FOLDERS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
"""nnU-Net's three folder variables."""


def use_nnunet_folders(root: Path) -> None:
    """Create ``root/nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` and export them for
    this process and its children. ``nnunetv2.paths`` reads the variables when it is first
    imported, so call this before anything imports nnU-Net's planning, training or export code."""
    for name in NNUNET_FOLDERS:
        (Path(root) / name).mkdir(parents=True, exist_ok=True)
        os.environ[name] = str(Path(root) / name)


def default_process_counts() -> None:
    """Process counts default to the machine's cores (nnU-Net's own defaults, 8 and 12,
    oversubscribe small machines and slow them down); values already set are kept."""
    cores = str(max(1, os.cpu_count() or 1))
    os.environ.setdefault("nnUNet_def_n_proc", cores)
    os.environ.setdefault("nnUNet_n_proc_DA", cores)


FOREGROUND_INTENSITY_SAMPLES = 10 ** 7
"""Foreground voxels per channel that the fingerprint samples for its intensity statistics (nnU-Net
samples 10^8: about 10 GiB in one process for the demo's 9-channel cutout dataset)."""


def plan_dataset(dataset_id: int) -> Path:
    """nnU-Net fingerprint (``FOREGROUND_INTENSITY_SAMPLES``) and ``nnUNetPlans``; returns the
    preprocessed dataset folder (where the plans are)."""
    from nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor import DatasetFingerprintExtractor
    from nnunetv2.experiment_planning.plan_and_preprocess_api import extract_fingerprint_dataset, plan_experiments
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    class SampledFingerprintExtractor(DatasetFingerprintExtractor):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.num_foreground_voxels_for_intensitystats = FOREGROUND_INTENSITY_SAMPLES

    # The converters already validated every case (nnU-Net's integrity check is in their tests).
    extract_fingerprint_dataset(dataset_id, SampledFingerprintExtractor, num_processes=_processes(),
                                check_dataset_integrity=False, verbose=False, show_progress_bar=False)
    plan_experiments([dataset_id])
    return Path(os.environ["nnUNet_preprocessed"]) / maybe_convert_to_dataset_name(dataset_id)


def preprocess_configuration(dataset_id: int, configuration: str, plans: str = "nnUNetPlans") -> None:
    """nnU-Net preprocessing of one configuration of ``plans``."""
    from nnunetv2.experiment_planning.plan_and_preprocess_api import preprocess

    preprocess([dataset_id], plans_identifier=plans, configurations=(configuration,), num_processes=(_processes(),),
               show_progress_bar=False)


def plan_and_preprocess(dataset_id: int, configuration: str) -> Path:
    """``plan_dataset``, then ``preprocess_configuration`` of ``nnUNetPlans``; returns the preprocessed folder."""
    folder = plan_dataset(dataset_id)
    preprocess_configuration(dataset_id, configuration)
    return folder


def _processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))


def train_fold_all(dataset_id: int, configuration: str, trainer_name: str, plans: str, device: str) -> Path:
    """Train ``trainer_name`` (its own budget) on every case (nnU-Net fold ``all``), then run nnU-Net's
    final validation as ``nnUNetv2_train`` does (``fold_all/validation/summary.json``, needed by the
    export); returns the model folder ``Trainer__Plans__configuration``. The training log is
    nnU-Net's own (``training_log_*.txt`` in the fold folder)."""
    import torch
    from nnunetv2.run.run_training import get_trainer_from_args

    trainer = get_trainer_from_args(str(dataset_id), configuration, "all", trainer_name, plans,
                                    device=torch.device(device))
    trainer.run_training()
    trainer.perform_actual_validation(False)
    return Path(trainer.output_folder).parent
