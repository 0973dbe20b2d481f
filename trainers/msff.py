"""Trainers for the MSFF U-Net (nnU-Net's U-Net with a multi-scale feature fusion bottleneck), with
anatomy-safe augmentation like all our trainers."""
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_symtc.networks.msff_unet import MSFFUNet
from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin
from nnunetv2_symtc.trainers.budget import TINY, budget_variant
from nnunetv2_symtc.trainers.size_adaptive import SizeAdaptiveCEMixin


class MSFFUNetMixin:
    """Put before an nnU-Net trainer in the bases: builds the plans' U-Net (default or ResEnc
    plans) with an MSFF bottleneck."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        return MSFFUNet.from_plans(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision)


class MSFFUNetTrainer(MSFFUNetMixin, AnatomicalAugmentationMixin, nnUNetTrainer):
    """nnU-Net's default trainer (Dice + CE) with the MSFF U-Net."""


class MSFFUNetTrainerSizeAdaptiveCE(SizeAdaptiveCEMixin, MSFFUNetTrainer):
    """The MSFF U-Net with Dice + size-adaptive CE: the size-adaptive seed system."""


MSFFUNetTrainer_tiny = budget_variant(MSFFUNetTrainer, "tiny", **TINY)
MSFFUNetTrainerSizeAdaptiveCE_tiny = budget_variant(MSFFUNetTrainerSizeAdaptiveCE, "tiny", **TINY)
