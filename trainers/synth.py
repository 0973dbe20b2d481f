"""Trainers that synthesise every training image from a label map (contrast-agnostic training).

``SynthesisMixin`` puts ``synthesis.transform.SynthesisTransform`` first in nnU-Net's training
augmentation: each sample's image is replaced, on the fly, by a draw of the generation model
(``synthesis.generator``) from its label map, and nnU-Net's spatial and intensity augmentation
follow as usual. The label map is the dataset's generation label map where the raw ``dataset.json``
declares one (``synthesis.generation_labels``; prepared at the start of training next to the
preprocessed data), else the training target itself. Validation batches and nnU-Net's final
validation use the dataset's own images, so they measure the model on its source domain.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import torch
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from nnunetv2_symtc.synthesis.generation_labels import generation_label_folder, prepare_generation_labels
from nnunetv2_symtc.synthesis.generator import SynthesisSettings
from nnunetv2_symtc.synthesis.transform import SynthesisTransform
from nnunetv2_symtc.trainers.budget import TINY, budget_variant
from nnunetv2_symtc.trainers.size_adaptive import nnUNetTrainerSizeAdaptiveCE
from nnunetv2_symtc.trainers.symtc import SymTCTrainer_lr1en3

GENERATION_FOLDER_SUFFIX = "_generation_labels"
"""Preprocessed generation label maps go to ``<preprocessed dataset>/<data identifier>`` + this."""


class SynthesisMixin:
    """Put before an nnU-Net trainer in the bases; ``synthesis_settings`` sets the generation model."""

    synthesis_settings: SynthesisSettings = SynthesisSettings()

    def _generation_labels_folder(self, identifiers) -> Optional[str]:
        from nnunetv2.paths import nnUNet_raw

        raw = Path(nnUNet_raw) / self.plans_manager.dataset_name
        raw_dataset_json = json.loads((raw / "dataset.json").read_text())  # maps may be attached after planning
        if generation_label_folder(raw, raw_dataset_json) is None:
            self.print_to_log_file("synthesis: no generation label maps declared; the targets are the label maps")
            return None
        output = Path(self.preprocessed_dataset_folder_base) / (self.configuration_manager.data_identifier
                                                                + GENERATION_FOLDER_SUFFIX)
        prepare_generation_labels(raw, output, identifiers, self.dataset_class, self.plans_manager,
                                  self.configuration_manager, raw_dataset_json, Path(self.preprocessed_dataset_folder))
        self.print_to_log_file(f"synthesis: generation label maps from {output}")
        return str(output)

    def get_tr_and_val_datasets(self):
        tr_keys, val_keys = self.do_split()
        dataset_tr = self.dataset_class(self.preprocessed_dataset_folder, tr_keys,
                                        folder_with_segs_from_previous_stage=self._generation_labels_folder(tr_keys))
        dataset_val = self.dataset_class(self.preprocessed_dataset_folder, val_keys)
        return dataset_tr, dataset_val

    def get_training_transforms(self, *args, **kwargs):
        if kwargs.get("is_cascaded"):
            raise ValueError("synthesis trainers do not train cascade stages (the previous stage's segmentation "
                             "channel carries the generation label map)")
        pipeline = super().get_training_transforms(*args, **kwargs)
        return ComposeTransforms([SynthesisTransform(self.synthesis_settings), *pipeline.transforms])


class nnUNetTrainerSynth(SynthesisMixin, nnUNetTrainerSizeAdaptiveCE):
    """``nnUNetTrainerSizeAdaptiveCE`` (U-Net, Dice + size-adaptive CE, anatomy-safe augmentation)
    on images synthesised from label maps."""


nnUNetTrainerSynth_tiny = budget_variant(nnUNetTrainerSynth, "tiny", **TINY)


class SymTCTrainerSynth(SynthesisMixin, SymTCTrainer_lr1en3):
    """``SymTCTrainer_lr1en3`` (SymTC, lr 1e-3) on images synthesised from label maps."""


class nnUNetTrainerSynth_realscans(nnUNetTrainerSynth):
    """``nnUNetTrainerSynth`` for 50 epochs of 40 iterations (10 validation iterations), keeping
    ``checkpoint_epoch_<N>.pth`` every ``learning_curve_every`` epochs: the default run of
    ``benchmarks/real_scans.py``, which scores each kept checkpoint on real slices."""

    learning_curve_every: int = 10

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.num_epochs = 50
        self.num_iterations_per_epoch = 40
        self.num_val_iterations_per_epoch = 10

    def on_epoch_end(self):
        finished = self.current_epoch + 1  # nnU-Net counts the epoch after this call
        if finished % self.learning_curve_every == 0 and finished != self.num_epochs:
            self.save_checkpoint(str(Path(self.output_folder) / f"checkpoint_epoch_{finished}.pth"))
        super().on_epoch_end()
