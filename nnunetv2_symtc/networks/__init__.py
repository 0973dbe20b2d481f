"""Networks: building blocks (``blocks``, ``attention``) apart from architectures (``symtc``, ``msff_unet``).

``SymTC`` (2D) and ``SymTC3D`` (3D) are the SymTC hybrid CNN-transformer of Chen et al. (2024),
built from nnU-Net plans by ``nnunetv2_symtc.networks.nnunet_builder``. ``MSFFUNet`` is nnU-Net's
U-Net with a multi-scale feature fusion bottleneck (our reconstruction of Zhang et al. 2023).
"""
from nnunetv2_symtc.networks.symtc import SymTC, SymTC3D  # noqa: F401
from nnunetv2_symtc.networks.msff_unet import MSFFUNet, MultiScaleFeatureFusion  # noqa: F401

__all__ = ["SymTC", "SymTC3D", "MSFFUNet", "MultiScaleFeatureFusion"]
