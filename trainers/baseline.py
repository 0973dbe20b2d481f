"""``nnUNetTrainerAnatomy``: the CE baseline of the loss comparisons (the training benchmarks).

nnU-Net's default trainer (Dice + CE) with our anatomy-safe augmentation, so that it differs from
``nnUNetTrainerSizeAdaptiveCE`` only in the CE term. A registered trainer, so that
``nnUNetv2_train -tr nnUNetTrainerAnatomy`` and nnU-Net's predictor find it by name.
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin


class nnUNetTrainerAnatomy(AnatomicalAugmentationMixin, nnUNetTrainer):
    """nnU-Net's Dice + CE trainer with anatomy-safe mirroring and rotation."""
