"""Our nnU-Net trainers, importable as ``nnunetv2_symtc.trainers``.

Trainer names are permanent: nnU-Net names result folders ``Trainer__Plans__config`` after them,
so renaming one orphans every model trained with it. ``__all__`` is the list nnU-Net's lookup sees
(through ``nnunetv2_symtc.nnunet_lookup``); the README lists the same names and a test keeps the
two in step.
"""
from nnunetv2_symtc.trainers.budget import TINY, budget_variant  # noqa: F401  (factory for variants)

from nnunetv2_symtc.trainers.size_adaptive import (nnUNetTrainerSizeAdaptiveCE, nnUNetTrainerSizeAdaptiveCE_tiny,
                                                  SymTCTrainerSizeAdaptiveCE, SymTCTrainerSizeAdaptiveCE_tiny)
from nnunetv2_symtc.trainers.msff import (MSFFUNetTrainer, MSFFUNetTrainer_tiny, MSFFUNetTrainerSizeAdaptiveCE,
                                          MSFFUNetTrainerSizeAdaptiveCE_tiny)
from nnunetv2_symtc.trainers.symtc import *  # noqa: F401,F403  (the names in SYMTC_TRAINERS)
from nnunetv2_symtc.trainers.symtc import SYMTC_TRAINERS
from nnunetv2_symtc.trainers.instance import SpinepsInstanceTrainer, SpinepsInstanceTrainer_tiny
from nnunetv2_symtc.trainers.baseline import nnUNetTrainerAnatomy
from nnunetv2_symtc.trainers.demo import *  # noqa: F401,F403  (the names in DEMO_TRAINERS)
from nnunetv2_symtc.trainers.demo import DEMO_TRAINERS
from nnunetv2_symtc.trainers.synth import (nnUNetTrainerSynth, nnUNetTrainerSynth_tiny, nnUNetTrainerSynth_realscans,
                                           SymTCTrainerSynth)

__all__ = [
    "nnUNetTrainerSizeAdaptiveCE", "nnUNetTrainerSizeAdaptiveCE_tiny", "MSFFUNetTrainer", "MSFFUNetTrainer_tiny",
    "MSFFUNetTrainerSizeAdaptiveCE", "MSFFUNetTrainerSizeAdaptiveCE_tiny",
    "SymTCTrainerSizeAdaptiveCE", "SymTCTrainerSizeAdaptiveCE_tiny",
    *SYMTC_TRAINERS,
    "SpinepsInstanceTrainer", "SpinepsInstanceTrainer_tiny",
    "nnUNetTrainerAnatomy",
    *DEMO_TRAINERS,
    "nnUNetTrainerSynth", "nnUNetTrainerSynth_tiny", "nnUNetTrainerSynth_realscans", "SymTCTrainerSynth",
]
