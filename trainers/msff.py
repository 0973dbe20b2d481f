"""Trainers for the MSFF U-Net (nnU-Net's U-Net with a multi-scale feature fusion bottleneck), with
anatomy-safe augmentation like all our trainers. The network comes from MSFF plans
(``symtc plan-msff``) or, with U-Net plans, is the U-Net plus an MSFF bottleneck."""
import pydoc

from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from torch import nn

from nnunetv2_symtc.networks.msff_unet import MSFFUNet
from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin
from nnunetv2_symtc.trainers.budget import TINY, budget_variant
from nnunetv2_symtc.trainers.size_adaptive import SizeAdaptiveCEMixin


class MSFFUNetMixin:
    """Put before an nnU-Net trainer in the bases. MSFF plans (``symtc plan-msff``): the network
    the plans name, as nnU-Net builds it. U-Net plans (default or ResEnc): the plans' U-Net with an
    MSFF bottleneck added here (as before MSFF plans existed, so those models load unchanged)."""

    @staticmethod
    def build_network_architecture(plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True) -> nn.Module:
        network_class = pydoc.locate(configuration_manager.network_arch_class_name)
        if isinstance(network_class, type) and issubclass(network_class, MSFFUNet):
            return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                            num_output_channels, enable_deep_supervision)
        return MSFFUNet.from_plans(plans_manager, configuration_manager, num_input_channels, num_output_channels,
                                   enable_deep_supervision)


class MSFFUNetTrainer(MSFFUNetMixin, AnatomicalAugmentationMixin, nnUNetTrainer):
    """nnU-Net's default trainer (Dice + CE) with the MSFF U-Net."""


class MSFFUNetTrainerSizeAdaptiveCE(SizeAdaptiveCEMixin, MSFFUNetTrainer):
    """The MSFF U-Net with Dice + size-adaptive CE: the size-adaptive seed system."""


MSFFUNetTrainer_tiny = budget_variant(MSFFUNetTrainer, "tiny", **TINY)
MSFFUNetTrainerSizeAdaptiveCE_tiny = budget_variant(MSFFUNetTrainerSizeAdaptiveCE, "tiny", **TINY)
