"""nnU-Net's Dice + CE with the CE replaced by :class:`SizeAdaptiveCELoss`.

:func:`with_size_adaptive_ce` rewrites the loss nnU-Net's ``_build_loss`` returned, so the trainer
keeps nnU-Net's Dice (batch Dice, ``do_bg``, DDP, compile), its loss weights, its ignore-label
handling and its deep-supervision weights; only the CE term changes.
"""
from typing import Optional

from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from torch import Tensor, nn

from nnunetv2_symtc.losses.size_adaptive import SizeAdaptiveCELoss


class DiceAndSizeAdaptiveCELoss(nn.Module):
    """``weight_dice * dice + weight_ce * size-adaptive CE`` for one output scale.

    ``dice`` is called like nnU-Net's Dice losses: ``dice(logits, target, loss_mask=mask)`` with
    ignored voxels masked (label mode: ignore label replaced by 0; region mode: the last target
    channel is the ignore mask and is dropped). Unlike nnU-Net's ``DC_and_CE_loss`` the CE is also
    evaluated when every voxel is ignored (it is 0 then), so DDP ranks never skip a collective.
    """

    def __init__(self, dice: nn.Module, ce: SizeAdaptiveCELoss, weight_dice: float = 1.0, weight_ce: float = 1.0):
        super().__init__()
        self.dc, self.ce = dice, ce
        self.weight_dice, self.weight_ce = weight_dice, weight_ce

    def forward(self, net_output: Tensor, target: Tensor, instances: Optional[Tensor] = None) -> Tensor:
        """``net_output`` ``(b, c, *spatial)``; ``target`` ``(b, 1, *spatial)`` (regions: ``(b, c[+1], *spatial)``)."""
        ignore = self.ce.ignore_index
        if self.ce.region_based:
            mask = ~target[:, -1:].bool() if ignore is not None else None
            target_dice = target[:, :-1] if ignore is not None else target
        else:
            mask = target != ignore if ignore is not None else None
            target_dice = target.masked_fill(~mask, 0) if mask is not None else target
        dice = self.dc(net_output, target_dice, loss_mask=mask) if self.weight_dice != 0 else 0
        ce = self.ce(net_output, target, instances) if self.weight_ce != 0 else 0
        return self.weight_dice * dice + self.weight_ce * ce


def with_size_adaptive_ce(nnunet_loss: nn.Module, ignore_label: Optional[int], **ce_kwargs) -> nn.Module:
    """Replace the CE of an nnU-Net loss (``DC_and_CE_loss`` or ``DC_and_BCE_loss``, optionally in a
    ``DeepSupervisionWrapper``, whose weights are kept) by ``SizeAdaptiveCELoss(**ce_kwargs)``.

    ``ignore_label``: the label manager's ignore label (None if the dataset has none).
    """
    if isinstance(nnunet_loss, DeepSupervisionWrapper):
        return DeepSupervisionWrapper(with_size_adaptive_ce(nnunet_loss.loss, ignore_label, **ce_kwargs),
                                      nnunet_loss.weight_factors)
    if isinstance(nnunet_loss, DC_and_CE_loss):
        region_based = False
    elif isinstance(nnunet_loss, DC_and_BCE_loss):
        region_based = True
    else:
        raise TypeError(f"cannot add size-adaptive CE to {type(nnunet_loss).__name__}: expected nnU-Net's "
                        "DC_and_CE_loss or DC_and_BCE_loss (optionally in a DeepSupervisionWrapper)")
    ce = SizeAdaptiveCELoss(ignore_index=ignore_label, region_based=region_based, **ce_kwargs)
    return DiceAndSizeAdaptiveCELoss(nnunet_loss.dc, ce, nnunet_loss.weight_dice, nnunet_loss.weight_ce)
