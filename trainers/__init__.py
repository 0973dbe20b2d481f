"""Our nnU-Net trainers, importable as ``nnunetv2_symtc.trainers``.

Trainer names are permanent: nnU-Net names result folders ``Trainer__Plans__config`` after them,
so renaming one orphans every model trained with it. ``__all__`` is the list nnU-Net's lookup sees
(through ``nnunetv2_symtc.nnunet_lookup``); the README lists the same names and a test keeps the
two in step.
"""
from nnunetv2_symtc.trainers.budget import TINY, budget_variant  # noqa: F401  (factory for variants)

__all__ = []
