"""Networks: building blocks (``blocks``, ``attention``) apart from architectures (``symtc``, ``msff_unet``).

``SymTC`` (2D) and ``SymTC3D`` (3D) are the SymTC hybrid CNN-transformer of Chen et al. (2024),
named by SymTC plans (``symtc plan-symtc``) or built for nnU-Net's U-Net plans by
``networks.from_plans``. ``MSFFUNet`` is nnU-Net's U-Net with a multi-scale feature fusion
bottleneck (our reconstruction of Zhang et al. 2023); ``PlannedMSFFUNet`` is the same, named by
MSFF plans (``symtc plan-msff``).
"""
from nnunetv2_symtc.networks.symtc import SymTC, SymTC3D  # noqa: F401
from nnunetv2_symtc.networks.msff_unet import MSFFUNet, MultiScaleFeatureFusion, PlannedMSFFUNet  # noqa: F401

__all__ = ["SymTC", "SymTC3D", "MSFFUNet", "PlannedMSFFUNet", "MultiScaleFeatureFusion"]
