"""Networks: building blocks (``blocks``, ``attention``) apart from architectures (``symtc``).

``SymTC`` (2D) and ``SymTC3D`` (3D) are the SymTC hybrid CNN-transformer of Chen et al. (2024),
built from nnU-Net plans by ``nnunetv2_symtc.networks.nnunet_builder``.
"""
from nnunetv2_symtc.networks.symtc import SymTC, SymTC3D  # noqa: F401

__all__ = ["SymTC", "SymTC3D"]
