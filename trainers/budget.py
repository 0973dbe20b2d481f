"""One factory for training-budget variants (``<Trainer>_tiny``, ``<Trainer>_250epochs``, ...).

Budget variants differ from their base only in ``num_epochs`` and the iterations per epoch, so
they are generated rather than copy-pasted. The returned class is placed in the calling module
(like ``collections.namedtuple``), so assign it to a module-level name equal to its ``__name__``:
it then pickles and nnU-Net's lookup finds it through the re-export shim.
"""
import sys
from typing import Optional

import torch

TINY = dict(num_epochs=1, iterations_per_epoch=2, val_iterations_per_epoch=1)
"""The test budget: 1 epoch of 2 training and 1 validation iteration."""


def budget_variant(base: type, suffix: str, num_epochs: int,
                   iterations_per_epoch: Optional[int] = None,
                   val_iterations_per_epoch: Optional[int] = None) -> type:
    """Return ``base`` subclass ``f"{base.__name__}_{suffix}"`` with a different training budget.

    Iteration counts left at ``None`` keep the base trainer's (nnU-Net: 250 and 50).
    """

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        base.__init__(self, plans, configuration, fold, dataset_json, device)
        self.num_epochs = num_epochs
        if iterations_per_epoch is not None:
            self.num_iterations_per_epoch = iterations_per_epoch
        if val_iterations_per_epoch is not None:
            self.num_val_iterations_per_epoch = val_iterations_per_epoch

    name = f"{base.__name__}_{suffix}"
    if "__" in name:
        raise ValueError(f"trainer name {name!r} contains '__', which nnU-Net uses as separator")
    caller_module = sys._getframe(1).f_globals["__name__"]
    doc = (f"{base.__name__} trained for {num_epochs} epoch(s)"
           + (f" of {iterations_per_epoch} iterations" if iterations_per_epoch else "") + ".")
    return type(name, (base,), {"__init__": __init__, "__module__": caller_module,
                                "__qualname__": name, "__doc__": doc})
