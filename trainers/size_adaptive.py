"""Trainers whose CE term is the size-adaptive CE (REFERENCE §6), added by one mixin.

``SizeAdaptiveCEMixin`` rewrites the loss the base trainer's ``_build_loss`` returns (see
``nnunetv2_symtc.losses.with_size_adaptive_ce``): nnU-Net's Dice, loss weights, ignore label and
deep-supervision weights are kept, only the CE changes. Region-based datasets get the region
(binary CE) form. Augmentation is anatomy-safe, as in all our trainers (``AnatomicalAugmentationMixin``).
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_symtc.losses import with_size_adaptive_ce
from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin
from nnunetv2_symtc.trainers.budget import TINY, budget_variant
from nnunetv2_symtc.trainers.symtc import SymTCTrainer, SymTCTrainer_tiny


class SizeAdaptiveCEMixin:
    """Put before an nnU-Net trainer in the bases. ``size_adaptive_ce_kwargs`` are passed to
    ``SizeAdaptiveCELoss`` (defaults: gamma=1, smooth=1, w_max=10, class units, sample stats)."""

    size_adaptive_ce_kwargs: dict = {}

    def _build_loss(self):
        return with_size_adaptive_ce(super()._build_loss(), self.label_manager.ignore_label,
                                     **self.size_adaptive_ce_kwargs)


class nnUNetTrainerSizeAdaptiveCE(SizeAdaptiveCEMixin, AnatomicalAugmentationMixin, nnUNetTrainer):
    """nnU-Net's default trainer (U-Net, schedule) with Dice + size-adaptive CE and anatomy-safe augmentation."""


nnUNetTrainerSizeAdaptiveCE_tiny = budget_variant(nnUNetTrainerSizeAdaptiveCE, "tiny", **TINY)


class SymTCTrainerSizeAdaptiveCE(SizeAdaptiveCEMixin, SymTCTrainer):
    """``SymTCTrainer`` (SymTC / SymTC3D) with Dice + size-adaptive CE."""


class SymTCTrainerSizeAdaptiveCE_tiny(SizeAdaptiveCEMixin, SymTCTrainer_tiny):
    """``SymTCTrainer_tiny`` (CI budget and width) with Dice + size-adaptive CE."""
