"""Size-adaptive cross-entropy: voxel CE weighted by the size of the structure the voxel belongs to.

Zhang et al. (ICMLC 2023) publish only the idea ("adaptively weights the loss assigned to anatomy
with different sizes"); the definition implemented here is this project's (REFERENCE §6).
For sample ``b``, unit ``k`` (a class, or one connected structure of a class) and valid
(non-ignored) voxels ``i``::

    n[b, k]  = voxel count of unit k in sample b
    n_ref[b] = median of n[b, k] over the foreground units present
    w[b, k]  = clip(((n_ref + s) / (n[b, k] + s)) ** gamma, w_min, w_max)     (fp32, no gradient)
    loss     = sum_{b,i} w[b, k(i)] * ce_i / sum_{b,i} w[b, k(i)]

A sample without foreground gets weights 1. ``gamma=0`` is exactly
``CrossEntropyLoss(ignore_index=...)``; ``gamma=1`` without clamp gives every structure the same
total weight. ``reduction='symtc_sum'`` is SymTC's area-weighted CE: per image, the sum over the
units present (background included) of the unit's mean voxel CE, then the batch mean.

Region-based (one-hot, sigmoid) targets: every region channel ``r`` is a binary problem with two
units, its positive voxels (size ``n+[b, r]``, foreground) and its negative voxels
(``n-[b, r]`` = valid voxels - ``n+``). ``n_ref`` is the median of ``n+`` over the regions present
and each element ``(b, r, i)`` of the binary CE gets the weight of its unit; the loss is the
weighted mean over all valid elements, so ``gamma=0`` is the mean binary CE over valid elements.
"""
from typing import Literal, Optional, Tuple

import cc3d
import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

Unit = Literal["class", "instance"]
Stats = Literal["sample", "batch"]
Reduction = Literal["weighted_mean", "symtc_sum"]

BACKGROUND = 0
"""nnU-Net's background class index (label mode); unit 0 is always the background unit."""


def median_of_present(values: Tensor, present: Tensor) -> Tensor:
    """Row-wise median of ``values[present]`` (mean of the two middle values for an even count).

    ``values``, ``present``: ``(rows, k)``. Returns ``(rows,)`` float64; rows with nothing present
    get NaN (callers replace them).
    """
    values = values.double()
    sorted_values = torch.where(present, values, torch.full_like(values, float("inf"))).sort(dim=1).values
    count = present.sum(dim=1)
    low = ((count - 1).clamp(min=0) // 2).unsqueeze(1)
    high = (count // 2).clamp(max=values.shape[1] - 1).unsqueeze(1)
    median = 0.5 * (sorted_values.gather(1, low) + sorted_values.gather(1, high)).squeeze(1)
    return torch.where(count > 0, median, torch.full_like(median, float("nan")))


def _all_gather_1d(values: Tensor) -> Tensor:
    """Concatenate the 1-D tensors of all DDP ranks (lengths may differ)."""
    length = torch.tensor([values.numel()], device=values.device)
    lengths = [torch.zeros_like(length) for _ in range(dist.get_world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(int(n) for n in lengths))
    padded = torch.zeros(longest, dtype=values.dtype, device=values.device)
    padded[:values.numel()] = values
    gathered = [torch.zeros_like(padded) for _ in lengths]
    dist.all_gather(gathered, padded)
    return torch.cat([g[:int(n)] for g, n in zip(gathered, lengths)])


def _ddp_active() -> bool:
    return dist.is_available() and dist.is_initialized()


class SizeAdaptiveCELoss(nn.Module):
    """Cross-entropy with per-voxel weights that grow as the voxel's structure gets smaller.

    Args:
        gamma: exponent of the size ratio; 0 gives plain CE.
        smooth: ``s``, added to both counts of the ratio.
        w_min, w_max: clamp of the weights.
        ignore_index: label value whose voxels contribute nothing (nnU-Net's ignore label). In
            region mode any non-None value means "the last target channel marks ignored voxels",
            nnU-Net's convention for region targets.
        unit: ``'class'`` (one unit per class) or ``'instance'`` (one unit per connected component
            of each foreground class, or per (class, id) pair of an instance map passed to
            ``forward``). Background is always one unit.
        stats: ``'sample'`` (counts per sample) or ``'batch'`` (counts over the batch, all-reduced
            across DDP ranks when ``torch.distributed`` is initialised, so all ranks share weights).
        reduction: ``'weighted_mean'`` (REFERENCE §6) or ``'symtc_sum'`` (SymTC's area-weighted CE;
            ignores ``gamma``, ``smooth`` and the clamp; needs ``stats='sample'``).
        region_based: targets are one-hot/multi-hot regions scored with sigmoid binary CE.

    Call: ``loss(logits, target, instances=None)`` with logits ``(b, c, *spatial)`` and target
    ``(b, 1, *spatial)`` or ``(b, *spatial)`` integer class indices (region mode:
    ``(b, c[+1], *spatial)`` binary), ``instances`` an optional integer instance map shaped like
    the target. Returns a scalar fp32 tensor; never NaN/inf (all-ignored input gives 0).
    """

    def __init__(self, gamma: float = 1.0, smooth: float = 1.0, w_min: float = 0.0, w_max: float = 10.0,
                 ignore_index: Optional[int] = None, unit: Unit = "class", stats: Stats = "sample",
                 reduction: Reduction = "weighted_mean", region_based: bool = False):
        super().__init__()
        if unit not in ("class", "instance"):
            raise ValueError(f"unit must be 'class' or 'instance', got {unit!r}")
        if stats not in ("sample", "batch"):
            raise ValueError(f"stats must be 'sample' or 'batch', got {stats!r}")
        if reduction not in ("weighted_mean", "symtc_sum"):
            raise ValueError(f"reduction must be 'weighted_mean' or 'symtc_sum', got {reduction!r}")
        if reduction == "symtc_sum" and stats != "sample":
            raise ValueError("reduction='symtc_sum' is SymTC's per-image sum; it needs stats='sample'")
        if region_based and (unit != "class" or reduction != "weighted_mean"):
            raise ValueError("region-based targets support only unit='class' and reduction='weighted_mean'")
        if not (0.0 <= w_min <= w_max):
            raise ValueError(f"need 0 <= w_min <= w_max, got w_min={w_min}, w_max={w_max}")
        if smooth < 0:
            raise ValueError(f"smooth must be >= 0, got {smooth}")
        self.gamma, self.smooth, self.w_min, self.w_max = float(gamma), float(smooth), float(w_min), float(w_max)
        self.ignore_index = ignore_index
        self.unit, self.stats, self.reduction, self.region_based = unit, stats, reduction, region_based

    def extra_repr(self) -> str:
        return (f"gamma={self.gamma}, smooth={self.smooth}, w_min={self.w_min}, w_max={self.w_max}, "
                f"ignore_index={self.ignore_index}, unit={self.unit!r}, stats={self.stats!r}, "
                f"reduction={self.reduction!r}, region_based={self.region_based}")

    # ------------------------------------------------------------------ public API
    def forward(self, logits: Tensor, target: Tensor, instances: Optional[Tensor] = None) -> Tensor:
        with torch.autocast(device_type=logits.device.type, enabled=False):
            logits = logits.float()
            if self.region_based:
                voxel_loss, voxel_weight, batch_size = self._region_terms(logits, target)
            else:
                labels, valid = self._labels_and_valid(tuple(logits.shape), target)
                voxel_loss = F.cross_entropy(logits, labels, reduction="none")
                voxel_weight = self._label_weights(labels, valid, instances, logits.shape[1])
                batch_size = logits.shape[0]
            weighted = voxel_weight * voxel_loss
            if self.reduction == "symtc_sum":
                return weighted.sum() / batch_size
            total_weight = voxel_weight.sum()
            # all voxels ignored: 0, still connected to the graph so backward() works
            return weighted.sum() / total_weight.clamp(min=torch.finfo(torch.float32).tiny)

    @torch.no_grad()
    def voxel_weights(self, target: Tensor, num_classes: int, instances: Optional[Tensor] = None) -> Tensor:
        """The fp32 weight of every voxel for ``target`` ``(b, 1, *spatial)``: ``(b, *spatial)``
        (region mode: target ``(b, c[+1], *spatial)``, weights ``(b, c, *spatial)``); ignored
        voxels get 0. ``num_classes`` is the number of logit channels."""
        if self.region_based:
            regions, valid = self._regions_and_valid(target)
            return self._region_weights(regions, valid)
        logits_shape = (target.shape[0], num_classes, *target.shape[2:])
        labels, valid = self._labels_and_valid(logits_shape, target)
        return self._label_weights(labels, valid, instances, num_classes)

    # ------------------------------------------------------------------ label (softmax) mode
    def _labels_and_valid(self, logits_shape: Tuple[int, ...], target: Tensor) -> Tuple[Tensor, Tensor]:
        """Class indices ``(b, *spatial)`` with ignored voxels set to background, and the valid mask."""
        if target.ndim == len(logits_shape):
            if target.shape[1] != 1:
                raise ValueError(f"target must be (b, 1, *spatial) class indices, got shape {tuple(target.shape)}; "
                                 "use region_based=True for one-hot region targets")
            target = target[:, 0]
        if tuple(target.shape) != (logits_shape[0], *logits_shape[2:]):
            raise ValueError(f"target shape {tuple(target.shape)} does not match logits {tuple(logits_shape)}")
        labels = target.long()
        if self.ignore_index is not None:
            valid = labels != self.ignore_index
            labels = torch.where(valid, labels, BACKGROUND)
        else:
            valid = torch.ones_like(labels, dtype=torch.bool)
        num_classes = logits_shape[1]
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(f"target labels must lie in [0, {num_classes - 1}] (or be the ignore label "
                             f"{self.ignore_index}); found [{int(labels.min())}, {int(labels.max())}]")
        return labels, valid

    def _label_weights(self, labels: Tensor, valid: Tensor, instances: Optional[Tensor], num_classes: int) -> Tensor:
        """Per-voxel weights ``(b, *spatial)`` for class indices ``labels`` (ignored voxels = 0)."""
        if self.unit == "class":
            units, num_units = labels, num_classes
        else:
            units, num_units = self._instance_units(labels, valid, instances)
        batch = labels.shape[0]
        flat_units = units.reshape(batch, -1)
        flat_valid = valid.reshape(batch, -1)
        counts = torch.zeros(batch, num_units, dtype=torch.float64, device=labels.device)
        counts.scatter_add_(1, flat_units, flat_valid.double())
        unit_weights = self._unit_weights(counts)
        return (unit_weights.gather(1, flat_units) * flat_valid).float().reshape(labels.shape)

    def _instance_units(self, labels: Tensor, valid: Tensor, instances: Optional[Tensor]) -> Tuple[Tensor, int]:
        """Per-sample unit ids (0 = background, 1.. = structures) and the number of unit slots."""
        foreground = valid & (labels != BACKGROUND)
        if instances is not None:
            if instances.ndim == labels.ndim + 1:
                instances = instances[:, 0]
            if instances.shape != labels.shape:
                raise ValueError(f"instance map shape {tuple(instances.shape)} does not match target {tuple(labels.shape)}")
            instances = instances.to(labels.device).long()
            if instances.numel() and int(instances.min()) < 0:
                raise ValueError("instance ids must be >= 0")
            # a unit is a (class, instance id) pair; background is one unit whatever its ids
            key = torch.where(foreground, labels * (int(instances.max()) + 1) + instances + 1, 0)
            units = torch.empty_like(labels)
            for b in range(labels.shape[0]):
                with_background = torch.cat([key.new_zeros(1), key[b].flatten()])
                _, inverse = torch.unique(with_background, return_inverse=True)
                units[b] = inverse[1:].reshape(labels.shape[1:])
        else:
            connectivity = 26 if labels.ndim == 4 else 8
            if labels.ndim not in (3, 4):
                raise ValueError(f"unit='instance' needs 2D or 3D targets, got spatial rank {labels.ndim - 1}")
            cpu_labels = torch.where(foreground, labels, BACKGROUND).cpu().numpy().astype(np.uint32)
            components = [cc3d.connected_components(sample, connectivity=connectivity).astype(np.int64)
                          for sample in cpu_labels]  # per class: cc3d never joins voxels of different labels
            units = torch.from_numpy(np.stack(components)).to(labels.device)
        return units, int(units.max()) + 1 if units.numel() else 1

    # ------------------------------------------------------------------ region (sigmoid) mode
    def _regions_and_valid(self, target: Tensor) -> Tuple[Tensor, Tensor]:
        if self.ignore_index is not None:
            valid = ~target[:, -1:].bool()
            target = target[:, :-1]
        else:
            valid = torch.ones_like(target[:, :1], dtype=torch.bool)
        return target.bool(), valid

    def _region_terms(self, logits: Tensor, target: Tensor) -> Tuple[Tensor, Tensor, int]:
        regions, valid = self._regions_and_valid(target)
        if regions.shape != logits.shape:
            raise ValueError(f"region target {tuple(target.shape)} does not match logits {tuple(logits.shape)}"
                             + (" (the last target channel is the ignore mask)" if self.ignore_index is not None else ""))
        voxel_loss = F.binary_cross_entropy_with_logits(logits, regions.float(), reduction="none")
        return voxel_loss, self._region_weights(regions, valid), logits.shape[0]

    def _region_weights(self, regions: Tensor, valid: Tensor) -> Tensor:
        """Weights ``(b, r, *spatial)``: unit 2r+1 = positives of region r, unit 2r = its negatives."""
        batch, num_regions = regions.shape[:2]
        valid = valid.expand_as(regions)
        positives = (regions & valid).flatten(2).sum(2).double()
        negatives = valid.flatten(2).sum(2).double() - positives
        counts = torch.stack([negatives, positives], dim=2).reshape(batch, 2 * num_regions)
        foreground = torch.arange(2 * num_regions, device=regions.device) % 2 == 1
        unit_weights = self._unit_weights(counts, foreground).reshape(batch, num_regions, 2)
        spatial = (1,) * (regions.ndim - 2)
        weights = torch.where(regions, unit_weights[..., 1].reshape(batch, num_regions, *spatial),
                              unit_weights[..., 0].reshape(batch, num_regions, *spatial))
        return (weights * valid).float()

    # ------------------------------------------------------------------ shared
    def _unit_weights(self, counts: Tensor, foreground: Optional[Tensor] = None) -> Tensor:
        """Unit weights ``(b, units)`` (float64) from unit voxel counts ``(b, units)``.

        ``foreground`` flags foreground units (default: every unit but unit 0)."""
        if foreground is None:
            foreground = torch.arange(counts.shape[1], device=counts.device) != BACKGROUND
        present = counts > 0
        if self.reduction == "symtc_sum":
            return torch.where(present, 1.0 / counts.clamp(min=1.0), torch.zeros_like(counts))
        if self.stats == "batch":
            n_ref = self._batch_reference(counts, present & foreground)
            if self.unit == "class":  # a class is one unit across the batch (and across ranks)
                counts = counts.sum(0, keepdim=True)
                if _ddp_active():
                    dist.all_reduce(counts)
                counts = counts.expand(present.shape[0], -1)
        else:
            n_ref = median_of_present(counts, present & foreground).unsqueeze(1)
        ratio = (n_ref + self.smooth) / (counts + self.smooth)
        weights = ratio.pow(self.gamma).clamp(self.w_min, self.w_max)
        # no foreground reference (NaN) -> weight 1; with s=0, empty units would give inf -> unused anyway
        weights = torch.where(torch.isfinite(n_ref).expand_as(weights) & present, weights, torch.ones_like(weights))
        return weights

    def _batch_reference(self, counts: Tensor, foreground_present: Tensor) -> Tensor:
        """n_ref over the whole batch (and all DDP ranks), shape ``(1, 1)``."""
        if self.unit == "class":
            totals = (counts * foreground_present).sum(0, keepdim=True)
            present = foreground_present.any(0, keepdim=True).double()
            if _ddp_active():
                dist.all_reduce(totals)
                dist.all_reduce(present)
            return median_of_present(totals, present > 0).reshape(1, 1)
        sizes = counts[foreground_present]
        if _ddp_active():
            sizes = _all_gather_1d(sizes)
        return median_of_present(sizes.reshape(1, -1), torch.ones_like(sizes, dtype=torch.bool).reshape(1, -1)).reshape(1, 1)
