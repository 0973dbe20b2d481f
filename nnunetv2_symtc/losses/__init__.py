"""Losses: the size-adaptive cross-entropy (REFERENCE §6) and its Dice compound for nnU-Net."""
from nnunetv2_symtc.losses.compound import DiceAndSizeAdaptiveCELoss, with_size_adaptive_ce
from nnunetv2_symtc.losses.size_adaptive import SizeAdaptiveCELoss

__all__ = ["SizeAdaptiveCELoss", "DiceAndSizeAdaptiveCELoss", "with_size_adaptive_ce"]
