"""The demo's trainers (``symtc demo``): its three base trainers at each demo budget.

``DEMO_TRAINING`` holds the budgets (epochs and training iterations per epoch of every demo role;
validation runs ``max(1, iterations // 10)`` iterations per epoch); each (budget, role) is a
``budget_variant`` of the role's base trainer called ``<base>_demo_<budget>``, so a demo model's
result folder names the budget it was trained with and loads like any other model.
"""
from typing import Dict, Tuple

from nnunetv2_symtc.trainers.budget import budget_variant
from nnunetv2_symtc.trainers.instance import SpinepsInstanceTrainer
from nnunetv2_symtc.trainers.size_adaptive import nnUNetTrainerSizeAdaptiveCE
from nnunetv2_symtc.trainers.symtc import SymTCTrainer_lr1en3

DEMO_BASES: Dict[str, type] = {"unet": nnUNetTrainerSizeAdaptiveCE, "symtc": SymTCTrainer_lr1en3,
                               "phase2": SpinepsInstanceTrainer}
"""Demo role -> base trainer: phase-1 U-Net, phase-1 SymTC, phase-2 instance model."""

DEMO_TRAINING: Dict[str, Dict[str, Tuple[int, int]]] = {
    "tiny": dict.fromkeys(DEMO_BASES, (1, 2)),
    "cpu": {"unet": (16, 50), "symtc": (18, 30), "phase2": (10, 30)},
    "full": dict.fromkeys(DEMO_BASES, (100, 250)),
}
"""Demo budget -> role -> (epochs, training iterations per epoch)."""


def demo_trainer_name(role: str, budget: str) -> str:
    """Name of the trainer of demo ``role`` at ``budget``, e.g. ``SymTCTrainer_lr1en3_demo_cpu``."""
    return f"{DEMO_BASES[role].__name__}_demo_{budget}"


def _variant(role: str, budget: str) -> type:
    epochs, iterations = DEMO_TRAINING[budget][role]
    return budget_variant(DEMO_BASES[role], f"demo_{budget}", epochs, iterations, max(1, iterations // 10))


nnUNetTrainerSizeAdaptiveCE_demo_tiny = _variant("unet", "tiny")
SymTCTrainer_lr1en3_demo_tiny = _variant("symtc", "tiny")
SpinepsInstanceTrainer_demo_tiny = _variant("phase2", "tiny")
nnUNetTrainerSizeAdaptiveCE_demo_cpu = _variant("unet", "cpu")
SymTCTrainer_lr1en3_demo_cpu = _variant("symtc", "cpu")
SpinepsInstanceTrainer_demo_cpu = _variant("phase2", "cpu")
nnUNetTrainerSizeAdaptiveCE_demo_full = _variant("unet", "full")
SymTCTrainer_lr1en3_demo_full = _variant("symtc", "full")
SpinepsInstanceTrainer_demo_full = _variant("phase2", "full")

DEMO_TRAINERS = tuple(demo_trainer_name(role, budget) for budget in DEMO_TRAINING for role in DEMO_BASES)
"""Every trainer this module defines (for ``trainers/__init__.py``)."""
__all__ = list(DEMO_TRAINERS)
