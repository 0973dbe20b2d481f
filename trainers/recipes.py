"""Optimisation recipes (optimisers, schedules, gradient clipping, deep-supervision weights) for
transformer hybrids inside nnU-Net's training loop.

nnU-Net steps its scheduler once per epoch (``lr_scheduler.step(epoch)``) and clips gradients at
norm 12 inside ``train_step``. ``clip_gradients_before_step`` tightens the clip without
re-implementing ``train_step``: an optimizer pre-step hook clips again (after nnU-Net's clip and,
with AMP, after the GradScaler has unscaled the gradients), which equals clipping once at the
smaller norm.
"""
import math
from typing import Iterable, List, Sequence

import torch
from torch.optim.lr_scheduler import _LRScheduler


class WarmupCosineLR(_LRScheduler):
    """Linear warmup over ``warmup_epochs`` to ``initial_lr``, then cosine decay to
    ``final_fraction · initial_lr`` at ``max_epochs``. ``step(epoch)`` sets the lr of that epoch."""

    def __init__(self, optimizer: torch.optim.Optimizer, initial_lr: float, max_epochs: int,
                 warmup_epochs: int, final_fraction: float = 0.01):
        self.initial_lr, self.max_epochs = initial_lr, max(1, max_epochs)
        self.warmup_epochs = min(warmup_epochs, self.max_epochs - 1)
        self.final_fraction = final_fraction
        self.ctr = 0
        super().__init__(optimizer, -1)

    def lr_at(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.initial_lr * (epoch + 1) / (self.warmup_epochs + 1)
        progress = (epoch - self.warmup_epochs) / max(1, self.max_epochs - self.warmup_epochs)
        cosine = 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return self.initial_lr * (self.final_fraction + (1 - self.final_fraction) * cosine)

    def get_lr(self) -> List[float]:
        return [self.lr_at(max(0, self.last_epoch))] * len(self.optimizer.param_groups)

    def step(self, current_step: int = None) -> None:
        if current_step is None or current_step == -1:
            current_step, self.ctr = self.ctr, self.ctr + 1
        for group in self.optimizer.param_groups:
            group["lr"] = self.lr_at(current_step)
        self._last_lr = [group["lr"] for group in self.optimizer.param_groups]


def adamw_param_groups(network: torch.nn.Module, weight_decay: float) -> List[dict]:
    """Decay matrices and conv kernels only (not biases, norms or the position-code frequencies)."""
    decay, no_decay = [], []
    for name, parameter in network.named_parameters():
        if not parameter.requires_grad:
            continue
        exempt = parameter.ndim < 2 or ".position_codes." in f".{name}"
        (no_decay if exempt else decay).append(parameter)
    return [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]


def clip_gradients_before_step(optimizer: torch.optim.Optimizer, parameters: Iterable[torch.nn.Parameter],
                               max_norm: float) -> None:
    """Clip the gradient norm of ``parameters`` to ``max_norm`` right before every ``optimizer.step``."""
    parameters = list(parameters)

    def clip(_optimizer, _args, _kwargs):
        torch.nn.utils.clip_grad_norm_(parameters, max_norm)

    optimizer.register_step_pre_hook(clip)


def deep_supervision_weights(num_outputs: int) -> Sequence[float]:
    """Halving weights ``1, 1/2, 1/4, ...`` normalised to sum 1, all non-zero (every head trains;
    nnU-Net's own weights zero the lowest output, which would leave a SymTC head without gradient)."""
    weights = [0.5 ** i for i in range(num_outputs)]
    return [w / sum(weights) for w in weights]
