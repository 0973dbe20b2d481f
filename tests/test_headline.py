"""The demo's headline scores (``nnunetv2_symtc.evaluation.headline``) on small hand-made masks."""
import math

import numpy as np
import pytest

from nnunetv2_symtc.evaluation.headline import aggregate, level_naming, score_case, union_dice


def _spine():
    """A 1x12x8 sagittal strip: L4 (23) body+arcus, disc, L5 (24), sacrum (26), canal behind."""
    semantic = np.zeros((1, 12, 8), np.uint8)
    instance = np.zeros_like(semantic, dtype=np.uint16)
    for rows, vertebra in ((slice(0, 3), 23), (slice(4, 7), 24), (slice(8, 11), 26)):
        semantic[0, rows, :4] = 49 if vertebra != 26 else 26
        semantic[0, rows, 4] = 41 if vertebra != 26 else 26
        instance[0, rows, :5] = vertebra
    semantic[0, 3, :4], instance[0, 3, :4] = 100, 123
    semantic[0, 7, :4], instance[0, 7, :4] = 100, 124
    semantic[0, :, 6:8] = 61
    semantic[0, :6, 6] = 60
    return semantic, instance


def test_union_dice_ignores_subregion_confusion_and_counts_the_sacrum():
    semantic, _ = _spine()
    confused = np.where(semantic == 41, 49, semantic)  # arcus called body: still the whole vertebra
    assert union_dice(semantic, confused, (41, 49, 26)) == 1.0
    no_sacrum = np.where(semantic == 26, 0, semantic)
    assert union_dice(semantic, no_sacrum, (41, 49, 26)) == pytest.approx(2 * 30 / (45 + 30))
    assert math.isnan(union_dice(semantic, semantic, (43,)))


def test_scores_of_a_perfect_and_of_a_misnamed_prediction():
    semantic, instance = _spine()
    perfect = score_case(semantic, semantic, instance, instance)
    assert perfect["Dice vertebrae"] == perfect["Dice discs"] == perfect["Dice canal"] == 1.0
    assert perfect["PQ"] == 1.0 and (perfect["levels correct"], perfect["levels total"]) == (2, 2)  # not the sacrum

    shifted = np.where(np.isin(instance, (23, 24)), instance - 1, instance)  # every level one too high
    misnamed = score_case(semantic, semantic, instance, shifted)
    assert misnamed["PQ"] == 1.0  # PQ matches instances whatever their ids
    assert (misnamed["levels correct"], misnamed["levels total"]) == (0, 2)

    merged = np.where(instance == 24, 23, instance)  # L4 and L5 as one instance
    scores = score_case(semantic, semantic, instance, merged)
    assert scores["PQ"] < 0.5 and level_naming(instance, merged) == (1, 2)


def test_level_accuracy_is_pooled_over_vertebrae():
    rows = [{"PQ": 1.0, "levels correct": 2, "levels total": 2}, {"PQ": 0.0, "levels correct": 1, "levels total": 4}]
    summary = aggregate(rows)
    assert summary["PQ"] == 0.5 and summary["level accuracy"] == pytest.approx(0.5)
