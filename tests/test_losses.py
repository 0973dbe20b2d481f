"""Size-adaptive CE (REFERENCE §6) and its Dice compound inside nnU-Net's loss machinery."""
import math

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
import torch.nn.functional as F
from nnunetv2.training.loss.compound_losses import DC_and_BCE_loss, DC_and_CE_loss
from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

from nnunetv2_symtc.losses import DiceAndSizeAdaptiveCELoss, SizeAdaptiveCELoss, with_size_adaptive_ce
from nnunetv2_symtc.losses.size_adaptive import median_of_present

IGNORE = 4


def random_case(seed: int, shape=(2, 4, 6, 7, 8), ignore_fraction: float = 0.0):
    """Logits (b, c, *spatial) and a target (b, 1, *spatial) with some voxels set to IGNORE."""
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=generator) * 3
    target = torch.randint(0, shape[1], (shape[0], 1, *shape[2:]), generator=generator)
    if ignore_fraction:
        target[torch.rand(target.shape, generator=generator) < ignore_fraction] = IGNORE
    return logits, target


@pytest.mark.parametrize("ignore_fraction", [0.0, 0.3])
@pytest.mark.parametrize("shape", [(2, 4, 6, 7, 8), (3, 4, 9, 11)])
def test_gamma_zero_is_cross_entropy(ignore_fraction, shape):
    logits, target = random_case(0, shape, ignore_fraction)
    reference = torch.nn.CrossEntropyLoss(ignore_index=IGNORE)(logits, target[:, 0])
    for unit in ("class", "instance"):
        ours = SizeAdaptiveCELoss(gamma=0.0, ignore_index=IGNORE, unit=unit)(logits, target)
        assert torch.allclose(ours, reference, rtol=0, atol=1e-6), (unit, ours, reference)
    # nnU-Net passes the target without its channel axis, too
    assert torch.allclose(SizeAdaptiveCELoss(gamma=0.0, ignore_index=IGNORE)(logits, target[:, 0]), reference,
                          rtol=0, atol=1e-6)
    # and gamma=1 really differs, so the comparison above could fail
    assert not torch.allclose(SizeAdaptiveCELoss(ignore_index=IGNORE)(logits, target), reference, atol=1e-4)


def test_weights_follow_the_definition():
    target = torch.zeros(2, 1, 10, 10, dtype=torch.long)
    target[0, 0, :4, :4] = 1  # 16 voxels
    target[0, 0, 8:, 8:] = 2  # 4 voxels; background 80
    # sample 1: background only -> weights 1
    weights = SizeAdaptiveCELoss(gamma=1.0, smooth=1.0, w_max=10.0).voxel_weights(target, num_classes=3)
    n_ref = (16 + 4) / 2
    assert weights[0, 0, 0] == pytest.approx((n_ref + 1) / 17)
    assert weights[0, 9, 9] == pytest.approx((n_ref + 1) / 5)
    assert weights[0, 5, 5] == pytest.approx((n_ref + 1) / 81)
    assert torch.all(weights[1] == 1)
    clamped = SizeAdaptiveCELoss(gamma=2.0, w_min=0.5, w_max=3.0).voxel_weights(target, num_classes=3)
    assert clamped[0, 9, 9] == pytest.approx(min(((n_ref + 1) / 5) ** 2, 3.0))
    assert clamped[0, 5, 5] == pytest.approx(0.5)  # (11/81)^2 = 0.018 -> w_min
    assert weights.dtype == torch.float32


def test_median_of_present_is_the_usual_median():
    values = torch.tensor([[5.0, 1.0, 9.0, 4.0], [3.0, 100.0, 7.0, 0.0], [1.0, 2.0, 3.0, 4.0]])
    present = torch.tensor([[True, True, True, True], [True, False, True, False], [False] * 4])
    median = median_of_present(values, present)
    assert median[0] == 4.5 and median[1] == 5.0 and math.isnan(median[2])


def symtc_reference(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SymTC's area-weighted CE, written from the formula: per image, the sum over the classes
    present of the class's mean voxel CE; then the mean over images."""
    per_image = []
    for b in range(logits.shape[0]):
        log_probabilities = torch.log_softmax(logits[b].double(), dim=0)
        total = 0.0
        for c in range(logits.shape[1]):
            in_class = target[b, 0] == c
            if in_class.any():
                total = total - log_probabilities[c][in_class].mean()
        per_image.append(total)
    return torch.stack(per_image).mean()


def test_symtc_sum_matches_reference_formula():
    logits, target = random_case(1, (3, 5, 7, 9))
    target[1][target[1] == 3] = 0  # class 3 absent from image 1: the reference code would give NaN
    ours = SizeAdaptiveCELoss(reduction="symtc_sum")(logits, target)
    assert torch.allclose(ours.double(), symtc_reference(logits, target), atol=1e-5)
    assert torch.isfinite(ours)


@pytest.mark.parametrize("options", [dict(), dict(reduction="symtc_sum"), dict(unit="instance"),
                                     dict(stats="batch"), dict(smooth=0.0, w_max=float("inf"))])
def test_degenerate_patches_stay_finite(options):
    logits, _ = random_case(2, (2, 4, 5, 6, 7))
    logits.requires_grad_(True)
    targets = {
        "absent class": torch.randint(0, 3, (2, 1, 5, 6, 7)),          # class 3 never present
        "background only": torch.zeros(2, 1, 5, 6, 7, dtype=torch.long),
        "single foreground class": torch.full((2, 1, 5, 6, 7), 2),
        "all ignored": torch.full((2, 1, 5, 6, 7), IGNORE),
    }
    for name, target in targets.items():
        loss = SizeAdaptiveCELoss(ignore_index=IGNORE, **options)(logits, target)
        loss.backward()
        assert torch.isfinite(loss), name
        assert torch.isfinite(logits.grad).all(), name
        logits.grad = None
    assert SizeAdaptiveCELoss(ignore_index=IGNORE, **options)(logits, targets["all ignored"]) == 0


@pytest.mark.parametrize("options", [dict(), dict(reduction="symtc_sum"), dict(unit="instance")])
def test_ignored_voxels_get_zero_gradient(options):
    logits, target = random_case(3, (2, 4, 6, 7, 8), ignore_fraction=0.3)
    logits.requires_grad_(True)
    SizeAdaptiveCELoss(ignore_index=IGNORE, **options)(logits, target).backward()
    ignored = (target == IGNORE).expand_as(logits)
    assert ignored.any()
    assert torch.all(logits.grad[ignored] == 0)
    assert torch.all(logits.grad[~ignored].abs().sum() > 0)
    assert (logits.grad[~ignored] != 0).float().mean() > 0.99


def per_voxel_gradient_norm(loss_fn, logits, target):
    logits = logits.clone().requires_grad_(True)
    loss_fn(logits, target).backward()
    return logits.grad.norm(dim=1)[:, None]  # (b, 1, *spatial)


@pytest.mark.parametrize("unit", ["class", "instance"])
def test_small_structure_gets_larger_per_voxel_gradient(unit):
    # two structures, 4 vs 64 voxels, of different classes (class units) or of one class (instances)
    small_class, large_class = (1, 2) if unit == "class" else (1, 1)
    target = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    target[0, 0, 1:3, 1:3] = small_class
    target[0, 0, 6:14, 6:14] = large_class
    logits = torch.zeros(1, 3, 16, 16)  # uniform prediction: the same error on every voxel
    small, large = target == small_class, target == large_class
    if unit == "instance":
        small[0, 0, 6:14, 6:14] = False
        large[0, 0, 1:3, 1:3] = False
    adaptive = per_voxel_gradient_norm(SizeAdaptiveCELoss(unit=unit), logits, target)
    assert adaptive[small].min() > 5 * adaptive[large].max()
    plain = per_voxel_gradient_norm(SizeAdaptiveCELoss(gamma=0.0, unit=unit), logits, target)
    assert torch.allclose(plain[small].mean(), plain[large].mean())


def test_instance_units_from_components_and_from_an_instance_map():
    target = torch.zeros(1, 1, 12, 12, dtype=torch.long)
    target[0, 0, 0:2, 0:2] = 1     # component of 4 voxels
    target[0, 0, 5:11, 5:11] = 1   # component of 36 voxels, same class
    components = SizeAdaptiveCELoss(unit="instance").voxel_weights(target, num_classes=2)
    n_ref = (4 + 36) / 2
    assert components[0, 0, 0] == pytest.approx((n_ref + 1) / 5)
    assert components[0, 6, 6] == pytest.approx((n_ref + 1) / 37)
    assert torch.unique(SizeAdaptiveCELoss(unit="class").voxel_weights(target, num_classes=2)[target[:, 0] == 1]).numel() == 1
    # an instance map overrides connectivity: split the large component in two ids of 18 voxels
    instances = torch.zeros_like(target)
    instances[0, 0, 0:2, 0:2] = 7
    instances[0, 0, 5:8, 5:11] = 3
    instances[0, 0, 8:11, 5:11] = 9
    from_map = SizeAdaptiveCELoss(unit="instance").voxel_weights(target, num_classes=2, instances=instances)
    n_ref = 18.0  # median of (4, 18, 18)
    assert from_map[0, 0, 0] == pytest.approx((n_ref + 1) / 5)
    assert from_map[0, 6, 6] == pytest.approx(1.0) and from_map[0, 9, 9] == pytest.approx(1.0)


def test_batch_stats_pool_counts_over_the_batch():
    target = torch.zeros(2, 1, 8, 8, dtype=torch.long)
    target[0, 0, :2, :2] = 1     # class 1: 4 voxels in sample 0
    target[1, 0, :4, :4] = 1     # and 16 in sample 1 -> 20 in the batch
    target[1, 0, 6:, 6:] = 2     # class 2: 4 voxels
    weights = SizeAdaptiveCELoss(stats="batch").voxel_weights(target, num_classes=3)
    n_ref = (20 + 4) / 2
    assert weights[0, 0, 0] == pytest.approx((n_ref + 1) / 21) and weights[1, 0, 0] == weights[0, 0, 0]
    assert weights[1, 7, 7] == pytest.approx((n_ref + 1) / 5)
    per_sample = SizeAdaptiveCELoss(stats="sample").voxel_weights(target, num_classes=3)
    assert per_sample[0, 0, 0] == 1.0  # sample 0 alone: its only foreground unit is its reference


def _ddp_rank(rank: int, world_size: int, init_file: str, targets: torch.Tensor, results):
    torch.distributed.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        local = targets[rank::world_size]
        for unit in ("class", "instance"):
            loss = SizeAdaptiveCELoss(stats="batch", unit=unit)
            results[(rank, unit)] = loss.voxel_weights(local, num_classes=4)
    finally:
        torch.distributed.destroy_process_group()


def test_batch_stats_match_across_two_ddp_ranks(tmp_path):
    generator = torch.Generator().manual_seed(4)
    targets = torch.zeros(4, 1, 10, 10, dtype=torch.long)
    for b in range(4):  # different structure sizes on every sample
        size = 1 + int(torch.randint(0, 5, (1,), generator=generator))
        targets[b, 0, :size, :size] = 1 + b % 3
        targets[b, 0, 7:, 7 - b:] = 1
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_ddp_rank, args=(2, str(tmp_path / "init"), targets, results), nprocs=2, join=True)
        results = dict(results)
    for unit in ("class", "instance"):
        # what one process computes on the whole batch is what each rank computes on its half
        expected = SizeAdaptiveCELoss(stats="batch", unit=unit).voxel_weights(targets, num_classes=4)
        for rank in range(2):
            assert torch.allclose(results[(rank, unit)], expected[rank::2]), (unit, rank)
        local_only = SizeAdaptiveCELoss(stats="batch", unit=unit).voxel_weights(targets[0::2], num_classes=4)
        assert not torch.allclose(local_only, expected[0::2])  # the all-reduce mattered


def test_region_targets():
    generator = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 12, 12, generator=generator)
    regions = torch.zeros(2, 3, 12, 12, dtype=torch.bool)
    regions[:, 0, :8, :8] = True    # 64 voxels
    regions[:, 1, 2:6, 2:6] = True  # nested, 16 voxels
    regions[:, 2, 10:, 10:] = True  # 4 voxels
    plain = F.binary_cross_entropy_with_logits(logits, regions.float())
    assert torch.allclose(SizeAdaptiveCELoss(gamma=0.0, region_based=True)(logits, regions), plain, atol=1e-6)
    weights = SizeAdaptiveCELoss(region_based=True).voxel_weights(regions, num_classes=3)
    n_ref = 16.0
    assert weights[0, 2, 11, 11] == pytest.approx((n_ref + 1) / 5)
    assert weights[0, 0, 0, 0] == pytest.approx((n_ref + 1) / 65)
    assert weights[0, 2, 0, 0] == pytest.approx((n_ref + 1) / (144 - 4 + 1))  # negatives of region 2
    # nnU-Net's region convention with an ignore label: last target channel = ignored voxels
    ignore = torch.zeros(2, 1, 12, 12, dtype=torch.bool)
    ignore[:, :, :, :3] = True
    logits.requires_grad_(True)
    loss = SizeAdaptiveCELoss(region_based=True, ignore_index=1)(logits, torch.cat([regions, ignore], 1))
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.all(logits.grad[ignore.expand_as(logits)] == 0) and logits.grad[~ignore.expand_as(logits)].abs().min() > 0


def test_fp16_autocast_keeps_fp32_weights_and_reduction():
    logits, target = random_case(6, (2, 4, 8, 8))
    half = (logits * 2000).half()  # logits near fp16 range: the loss is computed in fp32
    with torch.autocast("cpu", dtype=torch.float16):
        loss = SizeAdaptiveCELoss()(half, target)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.allclose(loss, SizeAdaptiveCELoss()(half.float(), target))


def nnunet_dice_ce(ignore_label):
    return DC_and_CE_loss({"batch_dice": True, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=ignore_label, dice_class=MemoryEfficientSoftDiceLoss)


@pytest.mark.parametrize("ignore_label", [None, IGNORE])
def test_compound_at_gamma_zero_is_nnunets_dice_ce_with_deep_supervision(ignore_label):
    ds_weights = (4 / 7, 2 / 7, 1 / 7)
    nnunet = DeepSupervisionWrapper(nnunet_dice_ce(ignore_label), ds_weights)
    ours = with_size_adaptive_ce(nnunet, ignore_label, gamma=0.0)
    assert isinstance(ours, DeepSupervisionWrapper) and ours.weight_factors == ds_weights
    assert isinstance(ours.loss, DiceAndSizeAdaptiveCELoss) and ours.loss.dc is nnunet.loss.dc
    outputs, targets = [], []
    for scale, size in enumerate((16, 8, 4)):
        logits, target = random_case(10 + scale, (2, 4, size, size), 0.2 if ignore_label else 0.0)
        outputs.append(logits)
        targets.append(target)
    assert torch.allclose(ours(outputs, targets), nnunet(outputs, targets), atol=1e-6)


def test_deep_supervision_recomputes_weights_per_scale():
    target = torch.zeros(1, 1, 16, 16, dtype=torch.long)
    target[0, 0, :2, :2] = 1
    target[0, 0, 4:16, 4:16] = 2
    low = target[:, :, ::2, ::2]  # nnU-Net downsamples targets by nearest neighbour
    logits = [torch.randn(1, 3, 16, 16), torch.randn(1, 3, 8, 8)]
    loss = SizeAdaptiveCELoss(w_max=float("inf"))
    wrapped = DeepSupervisionWrapper(loss, (2 / 3, 1 / 3))
    expected = 2 / 3 * loss(logits[0], target) + 1 / 3 * loss(logits[1], low)
    assert torch.allclose(wrapped(logits, [target, low]), expected)
    high_w, low_w = loss.voxel_weights(target, 3), loss.voxel_weights(low, 3)
    # full resolution: classes of 4 and 144 voxels; half resolution: 1 and 36
    assert high_w[0, 0, 0] == pytest.approx((74 + 1) / 5) and low_w[0, 0, 0] == pytest.approx((18.5 + 1) / 2)


def test_region_compound_from_nnunets_dice_bce():
    nnunet = DC_and_BCE_loss({}, {"batch_dice": True, "do_bg": True, "smooth": 1e-5, "ddp": False},
                             use_ignore_label=True, dice_class=MemoryEfficientSoftDiceLoss)
    ours = with_size_adaptive_ce(nnunet, ignore_label=3, gamma=0.0)
    assert ours.ce.region_based
    generator = torch.Generator().manual_seed(7)
    logits = torch.randn(2, 2, 8, 8, generator=generator)
    target = (torch.rand(2, 3, 8, 8, generator=generator) > 0.6).float()
    valid = 1 - target[:, -1:]
    dice = nnunet.dc(logits, target[:, :-1], loss_mask=valid.bool())
    bce = (F.binary_cross_entropy_with_logits(logits, target[:, :-1], reduction="none") * valid).sum() \
        / (valid.sum() * logits.shape[1])
    assert torch.allclose(ours(logits, target), dice + bce, atol=1e-6)


def test_bad_input_is_rejected_with_a_clear_message():
    logits, target = random_case(8, (1, 3, 4, 4))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\]"):
        SizeAdaptiveCELoss()(logits, target.clamp(max=2) + 1)
    with pytest.raises(ValueError, match="region_based"):
        SizeAdaptiveCELoss()(logits, torch.zeros(1, 3, 4, 4))
    with pytest.raises(ValueError, match="symtc_sum"):
        SizeAdaptiveCELoss(reduction="symtc_sum", stats="batch")
    with pytest.raises(TypeError, match="DC_and_CE_loss"):
        with_size_adaptive_ce(torch.nn.CrossEntropyLoss(), None)
    assert np.isfinite(SizeAdaptiveCELoss()(logits, target.clamp(max=2)).item())
