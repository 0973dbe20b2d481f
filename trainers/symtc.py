"""SymTC trainers: our optimisation recipes for SymTC. Names are permanent (they name result folders).

**Plans own the network.** With SymTC plans (``symtc plan-symtc``, ``-p nnUNetPlans_SymTC``) every
trainer here builds the network the plans name (``nnunetv2_symtc.networks.SymTC`` / ``SymTC3D`` and
their ``arch_kwargs``), exactly as nnU-Net's own trainers do, and trains it with deep supervision
(halving weights, all non-zero); a name's width suffix (``_small``, ``_tiny``) then does not matter.
With nnU-Net's U-Net plans they build SymTC as before the plans owned the network (width from the
name, 3D geometry from ``symtc3d_geometry``, no deep supervision except ``SymTCTrainerDS``), so
models trained that way load and predict unchanged.

- ``SymTCTrainer``: nnU-Net's Dice + CE, AdamW with warmup + cosine decay and gradient clipping
  at 1 (see ``nnunetv2_symtc.trainers.recipes``); U-Net plans: paper-width SymTC / SymTC3D.
- ``SymTCTrainer_paper``: the paper's recipe: Adam at a constant 1e-4, clipping at 1, loss
  0.5·SymTC's area-weighted CE (``symtc_sum``) + 0.5·(−foreground soft Dice) (= 0.5·(1 − Dice) − 0.5).
- ``SymTCTrainer_small``: U-Net plans: ``SymTCTrainer`` with the paper's SymTC_s width (E=256, 8 heads).
- ``SymTCTrainer_lr1en3``: ``SymTCTrainer`` at a peak learning rate of 1e-3 (narrow SymTC plans, short budgets).
- ``SymTCTrainerDS``: U-Net plans: ``SymTCTrainer`` with two auxiliary heads and deep supervision at
  SymTC's ×4 steps (SymTC plans always have them).
- Budgets: ``SymTCTrainer_{250,100,50}epochs``, ``SymTCTrainer_paper_250epochs``. ``*_tiny`` are CI
  variants (TINY budget; with U-Net plans tiny width, except ``SymTCTrainer_paper_tiny``, which keeps
  the paper width so that imported reference checkpoints load into it).

Mirroring is anatomy-safe (``AnatomicalAugmentationMixin``).
"""
import pydoc

import torch
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from nnunetv2_symtc.losses import with_size_adaptive_ce
from nnunetv2_symtc.networks.from_plans import build_symtc_from_plans, symtc_deep_supervision_scales
from nnunetv2_symtc.networks.symtc import SymTCBase
from nnunetv2_symtc.trainers.anatomy import AnatomicalAugmentationMixin
from nnunetv2_symtc.trainers.budget import TINY, budget_variant
from nnunetv2_symtc.trainers.recipes import (WarmupCosineLR, adamw_param_groups, clip_gradients_before_step,
                                             deep_supervision_weights)


def plans_name_symtc(configuration_manager) -> bool:
    """Whether a configuration's ``architecture`` names a SymTC class (SymTC plans)."""
    network_class = pydoc.locate(configuration_manager.network_arch_class_name)
    return isinstance(network_class, type) and issubclass(network_class, SymTCBase)


class SymTCTrainer(AnatomicalAugmentationMixin, nnUNetTrainer):
    """SymTC / SymTC3D with AdamW, warmup + cosine schedule and gradient clipping at 1.

    ``symtc_width`` and ``symtc_deep_supervision_heads`` choose the network only for U-Net plans."""

    max_grad_norm = 1.0
    warmup_fraction = 0.02
    symtc_width = "paper"
    symtc_deep_supervision_heads = False

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.network_from_plans = plans_name_symtc(self.configuration_manager)
        self.enable_deep_supervision = self.network_from_plans or self.symtc_deep_supervision_heads
        self.initial_lr = 3e-4
        self.weight_decay = 1e-2

    @classmethod
    def build_network_architecture(cls, plans_manager, configuration_manager, num_input_channels: int,
                                   num_output_channels: int, enable_deep_supervision: bool = True):
        if plans_name_symtc(configuration_manager):
            return nnUNetTrainer.build_network_architecture(plans_manager, configuration_manager, num_input_channels,
                                                            num_output_channels, enable_deep_supervision)
        return build_symtc_from_plans(plans_manager, configuration_manager, num_input_channels,
                                      num_output_channels, enable_deep_supervision, width=cls.symtc_width,
                                      deep_supervision_heads=cls.symtc_deep_supervision_heads)

    def set_deep_supervision_enabled(self, enabled: bool):
        # nnU-Net re-enables deep supervision after its final validation; only networks with heads may.
        super().set_deep_supervision_enabled(enabled and self.enable_deep_supervision)

    def _get_deep_supervision_scales(self):
        if not self.enable_deep_supervision or self.network_from_plans:
            return super()._get_deep_supervision_scales()  # SymTC plans: from their strides
        return symtc_deep_supervision_scales(self.configuration_manager.patch_size, self.configuration_manager.spacing)

    def _build_loss(self):
        loss = super()._build_loss()
        if self.enable_deep_supervision:  # every head trains (nnU-Net's own weights zero the lowest)
            loss.weight_factors = tuple(deep_supervision_weights(len(loss.weight_factors)))
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(adamw_param_groups(self.network, self.weight_decay), lr=self.initial_lr)
        clip_gradients_before_step(optimizer, self.network.parameters(), self.max_grad_norm)
        warmup = round(self.warmup_fraction * self.num_epochs)
        return optimizer, WarmupCosineLR(optimizer, self.initial_lr, self.num_epochs, warmup)


class SymTCTrainer_small(SymTCTrainer):
    """``SymTCTrainer``; with U-Net plans the paper's SymTC_s width (E=256, 8 heads)."""

    symtc_width = "small"


class SymTCTrainer_paper(SymTCTrainer):
    """The paper's recipe: Adam 1e-4 constant, clip 1, 0.5·symtc_sum CE + 0.5·(1 − foreground soft Dice)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-4
        self.weight_decay = 0.0

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.network.parameters(), lr=self.initial_lr)
        clip_gradients_before_step(optimizer, self.network.parameters(), self.max_grad_norm)
        return optimizer, WarmupCosineLR(optimizer, self.initial_lr, self.num_epochs, 0, final_fraction=1.0)

    def _build_loss(self):
        loss = with_size_adaptive_ce(super()._build_loss(), self.label_manager.ignore_label, reduction="symtc_sum")
        inner = loss.loss if isinstance(loss, DeepSupervisionWrapper) else loss
        inner.weight_ce = inner.weight_dice = 0.5
        return loss


class SymTCTrainerDS(SymTCTrainer):
    """``SymTCTrainer``; with U-Net plans plus two 1×1 auxiliary heads, deep-supervised at 1/s1 and 1/(s1·s2)."""

    symtc_deep_supervision_heads = True


class SymTCTrainer_lr1en3(SymTCTrainer):
    """``SymTCTrainer`` at a peak learning rate of 1e-3 instead of 3e-4: for narrow SymTC plans
    (E ≤ 128) and budgets of a few hundred iterations, such as the CPU demo's, where 3e-4 leaves
    most structures unlearnt (measured: ``nnunetv2_symtc.demo``)."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3


def _tiny_width(trainer: type) -> type:
    """Give a CI variant the tiny SymTC width for U-Net plans (same blocks; nnU-Net paths run in seconds on a CPU)."""
    trainer.symtc_width = "tiny"
    return trainer


SymTCTrainer_250epochs = budget_variant(SymTCTrainer, "250epochs", 250)
SymTCTrainer_100epochs = budget_variant(SymTCTrainer, "100epochs", 100)
SymTCTrainer_50epochs = budget_variant(SymTCTrainer, "50epochs", 50)
SymTCTrainer_paper_250epochs = budget_variant(SymTCTrainer_paper, "250epochs", 250)
SymTCTrainer_tiny = _tiny_width(budget_variant(SymTCTrainer, "tiny", **TINY))
SymTCTrainer_paper_tiny = budget_variant(SymTCTrainer_paper, "tiny", **TINY)  # paper width: takes imported checkpoints
SymTCTrainer_small_tiny = _tiny_width(budget_variant(SymTCTrainer_small, "tiny", **TINY))
SymTCTrainerDS_tiny = _tiny_width(budget_variant(SymTCTrainerDS, "tiny", **TINY))

SYMTC_TRAINERS = ("SymTCTrainer", "SymTCTrainer_small", "SymTCTrainer_paper", "SymTCTrainerDS",
                  "SymTCTrainer_lr1en3",
                  "SymTCTrainer_250epochs", "SymTCTrainer_100epochs", "SymTCTrainer_50epochs",
                  "SymTCTrainer_paper_250epochs", "SymTCTrainer_tiny", "SymTCTrainer_paper_tiny",
                  "SymTCTrainer_small_tiny", "SymTCTrainerDS_tiny")
"""Every trainer this module defines (for ``trainers/__init__.py``)."""
__all__ = list(SYMTC_TRAINERS)
