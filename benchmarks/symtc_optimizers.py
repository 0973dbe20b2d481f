"""Which optimiser suits SymTC? A short phantom comparison (prints a table).

Trains the same SymTC (reduced width so a CPU run takes minutes) from the same initialisation on
SSMSpine-style phantom slices (12 classes, downsampled to ``--size``²) with nnU-Net's Dice + CE,
under each candidate recipe, and reports the loss curve (mean of each fifth of the run) and the
foreground Dice on held-out phantom slices:

- ``sgd``: nnU-Net's default, SGD + Nesterov 0.99, lr 1e-2, poly decay, clip 12;
- ``adam_paper``: the reference's Adam, lr 1e-4 constant, clip 1;
- ``adamw_warmup_cosine``: SymTCTrainer's AdamW lr 3e-4, wd 1e-2, warmup + cosine, clip 1.

Usage: ``OMP_NUM_THREADS=2 python benchmarks/symtc_optimizers.py --iterations 60``
"""
import argparse
import time

import numpy as np
import torch
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler

from nnunetv2_symtc.networks import SymTC
from nnunetv2_symtc.phantom import generate_ssmspine_sample
from nnunetv2_symtc.trainers.recipes import WarmupCosineLR, adamw_param_groups

NUM_CLASSES = 12


def phantom_slices(count: int, size: int, seed: int):
    images, labels = [], []
    for i in range(count):
        sample = generate_ssmspine_sample(seed, patient=i, aug=i)
        image = torch.as_tensor(np.asarray(sample["img"], dtype=np.float32))[None, None]
        label = torch.as_tensor(np.asarray(sample["label"]).reshape(1, 1, *image.shape[2:]).astype(np.float32))
        images.append(F.interpolate(image, size=(size, size), mode="area")[0])
        labels.append(F.interpolate(label, size=(size, size), mode="nearest")[0].long())
    return torch.stack(images), torch.stack(labels)


def recipe(name: str, network: torch.nn.Module, iterations: int):
    if name == "sgd":
        optimizer = torch.optim.SGD(network.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
        return optimizer, PolyLRScheduler(optimizer, 1e-2, iterations), 12.0
    if name == "adam_paper":
        return torch.optim.Adam(network.parameters(), 1e-4), None, 1.0
    optimizer = torch.optim.AdamW(adamw_param_groups(network, 1e-2), lr=3e-4)
    return optimizer, WarmupCosineLR(optimizer, 3e-4, iterations, max(1, iterations // 20)), 1.0


def foreground_dice(logits: torch.Tensor, target: torch.Tensor) -> float:
    prediction = logits.argmax(1)
    target = target[:, 0]
    scores = []
    for c in range(1, NUM_CLASSES):
        p, t = prediction == c, target == c
        if t.any():
            scores.append(2 * (p & t).sum().item() / (p.sum() + t.sum()).item())
    return float(np.mean(scores))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--recipes", nargs="+", default=["sgd", "adam_paper", "adamw_warmup_cosine"])
    args = parser.parse_args()
    train_x, train_y = phantom_slices(16, args.size, seed=1)
    val_x, val_y = phantom_slices(4, args.size, seed=2)
    loss_fn = DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {},
                             weight_ce=1, weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    print(f"SymTC E={args.embed_dim}, {args.iterations} iterations x batch {args.batch} at {args.size}^2, "
          f"16 train / 4 val phantom slices, 12 classes")
    print(f"{'recipe':22s} {'loss by fifth of the run':>40s} {'val fg Dice':>12s} {'s':>6s}")
    for name in args.recipes:
        torch.manual_seed(0)
        network = SymTC(1, NUM_CLASSES, embed_dim=args.embed_dim, num_heads=args.embed_dim // 32)
        optimizer, scheduler, clip = recipe(name, network, args.iterations)
        generator = torch.Generator().manual_seed(0)
        losses, start = [], time.time()
        for it in range(args.iterations):
            if scheduler is not None:
                scheduler.step(it)
            idx = torch.randint(0, len(train_x), (args.batch,), generator=generator)
            loss = loss_fn(network(train_x[idx]), train_y[idx])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), clip)
            optimizer.step()
            losses.append(loss.item())
        with torch.no_grad():
            dice = foreground_dice(network.eval()(val_x), val_y)
        fifths = [np.mean(chunk) for chunk in np.array_split(losses, 5)]
        print(f"{name:22s} {' '.join(f'{v:7.3f}' for v in fifths):>40s} {dice:12.3f} {time.time() - start:6.0f}",
              flush=True)


if __name__ == "__main__":
    main()
