"""Phase-2 (vertebra-instance) trainer of the SPINEPS-style two-phase segmentation.

Its classes are "the vertebra above / the centre vertebra / the vertebra below" and its inputs
hold left/right paired subregions, so mirroring along superior–inferior (swaps above and below)
and along left–right (swaps the paired channels without swapping the channels' meaning) is
disabled, in training and in test-time augmentation. In 3D only anterior–posterior mirroring is
left; 2D sagittal slices of the cutouts (the CPU demo's phase 2) get none
(``AnatomicalAugmentationMixin`` with ``allow_left_right_mirroring = False``).
"""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin
from nnunetv2_symtc.trainers.budget import TINY, budget_variant


class SpinepsInstanceTrainer(AnatomicalAugmentationMixin, nnUNetTrainer):
    """nnU-Net's default trainer with label-safe mirroring for phase-2 cutouts."""

    allow_left_right_mirroring = False


SpinepsInstanceTrainer_tiny = budget_variant(SpinepsInstanceTrainer, "tiny", **TINY)
