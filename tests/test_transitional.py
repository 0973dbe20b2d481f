"""Transitional vertebrae (an L6, or a T13) end to end: phantom masks in every format, SPIDER levels."""
import numpy as np
import pytest

from nnunetv2_symtc import labels as L
from nnunetv2_symtc.instance.labeling import spineps_to_spider
from nnunetv2_symtc.io import read_image
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject, write_spider, write_spineps


@pytest.fixture(scope="module")
def lumbarised():
    """A tiny phantom with six lumbar vertebrae above the sacrum (L6 = 25)."""
    return generate_subject(0, PhantomConfig.tiny(transitional_vertebra=L.L6_ID))


@pytest.fixture(scope="module")
def thirteen_thoracic():
    """A tiny phantom with a T13 (28) between T12 and L1."""
    return generate_subject(0, PhantomConfig.tiny(transitional_vertebra=L.T13_ID))


def _z(subject, mask: np.ndarray) -> float:
    """World z (mm, superior) of a mask's centroid."""
    return float(subject.geometry.index_to_world(np.argwhere(mask).mean(axis=0))[2])


def test_spider_levels_count_up_from_the_lowest_lumbar_vertebra():
    standard = L.spider_levels([*range(1, 25), L.SACRUM_ID])
    assert standard == {v: L.vertebra_id_to_spider_level(v) for v in range(1, 25)}
    with_l6 = L.spider_levels([19, 20, 21, 22, 23, 24, 25, 26])
    assert with_l6 == {25: 1, 24: 2, 23: 3, 22: 4, 21: 5, 20: 6, 19: 7}
    with_t13 = L.spider_levels([19, 28, 20, 24])
    assert with_t13 == {24: 1, 20: 5, 28: 6, 19: 7}
    assert L.spider_levels([1, 25])[1] == 25  # C1 is level 25 in a lumbarised spine
    with pytest.raises(ValueError, match="above 25"):
        L.spider_levels([1, 25, 28])
    with pytest.raises(ValueError, match="27"):
        L.spider_levels([27])


@pytest.mark.parametrize("transitional, order", [
    (L.L6_ID, (19, 20, 21, 22, 23, 24, 25, 26)),
    (L.T13_ID, (19, 28, 20, 21, 22, 23, 24, 26)),
])
def test_transitional_vertebra_in_the_spineps_masks(transitional, order, lumbarised, thirteen_thoracic):
    subject = lumbarised if transitional == L.L6_ID else thirteen_thoracic
    assert subject.vertebra_ids == order and subject.partial_ids == (19, 26)
    vert, bones = subject.vert_mask, subject.bone_ids()
    z = {v: _z(subject, bones == v) for v in order}
    assert [z[v] for v in order] == sorted(z.values(), reverse=True)  # top to bottom in the world
    values = set(np.unique(vert).tolist())
    assert {v for v in values if 0 < v < L.SPINEPS_DISC_OFFSET} == set(order)
    # Disc 100 + X and endplates 200 + X sit between X and the vertebra below it, whatever X is.
    for upper, lower in zip(order, order[1:]):
        for value in (L.SPINEPS_DISC_OFFSET + upper, L.SPINEPS_ENDPLATE_OFFSET + upper):
            assert z[lower] < _z(subject, vert == value) < z[upper], value
    assert L.SPINEPS_DISC_OFFSET + transitional in values
    # Semantic mask: the transitional vertebra has all nine subregions.
    assert set(np.unique(subject.spine_mask[vert == transitional]).tolist()) == set(L.VERTEBRA_SUBREGIONS)


def test_default_and_transitional_configurations_validate():
    assert PhantomConfig().levels == (19, 20, 21, 22, 23, 24)
    assert PhantomConfig(transitional_vertebra=L.T13_ID, include_t12=False).top_vertebra == L.T13_ID
    with pytest.raises(ValueError, match="transitional vertebra"):
        PhantomConfig(transitional_vertebra=27)
    with pytest.raises(ValueError, match="cut_vertebra"):
        PhantomConfig(transitional_vertebra=L.L6_ID, cut_vertebra=L.L6_ID)  # the lowest lumbar is always whole
    s = generate_subject(1, PhantomConfig.tiny(transitional_vertebra=L.T13_ID, include_t12=False))
    assert s.vertebra_ids[0] == L.T13_ID and L.T13_ID in s.partial_ids and 19 not in s.vertebra_ids


def test_spider_masks_count_an_l6_as_level_1(lumbarised, thirteen_thoracic):
    spider = lumbarised.spider_mask()
    bones = lumbarised.bone_ids()
    assert np.all(spider[bones == L.L6_ID] == 1) and np.all(spider[bones == L.L5_ID] == 2)
    assert np.all(spider[bones == 19] == L.SPIDER_PARTIAL_OFFSET + 7)  # T12, cut by the top edge
    discs = lumbarised.vert_mask - L.SPINEPS_DISC_OFFSET
    assert np.all(spider[discs == L.L6_ID] == 201) and np.all(spider[discs == L.L5_ID] == 202)
    spider = thirteen_thoracic.spider_mask()
    bones = thirteen_thoracic.bone_ids()
    assert np.all(spider[bones == L.L5_ID] == 1) and np.all(spider[bones == L.L1_ID] == 5)
    assert np.all(spider[bones == L.T13_ID] == 6) and np.all(spider[bones == 19] == 107)


@pytest.mark.parametrize("transitional", [L.L6_ID, L.T13_ID])
def test_spider_values_from_spineps_maps_with_a_transitional_vertebra(transitional, lumbarised, thirteen_thoracic):
    subject = lumbarised if transitional == L.L6_ID else thirteen_thoracic
    spider = spineps_to_spider(subject.vert_mask, subject.spine_mask, subject.geometry.spacing_zyx)
    truth = subject.spider_mask()
    assert set(np.unique(spider).tolist()) == set(np.unique(truth).tolist())
    vertebrae = (truth >= 1) & (truth <= 125) & (truth != 100)
    assert (spider[vertebrae] == truth[vertebrae]).mean() > 0.97  # endplates: nearest vertebra vs. their owner
    discs = truth > 200
    assert np.array_equal(spider[discs], truth[discs])
    assert np.array_equal(spider == 100, truth == 100)
    assert not np.any(spider[subject.spine_mask == L.SACRUM])


def test_writers_carry_the_transitional_ids(tmp_path, lumbarised):
    write_spineps(tmp_path / "spineps", [("l6", lumbarised)])
    vert, _ = read_image(tmp_path / "spineps" / "sub-l6_seg-vert_msk.nii.gz")
    assert {25, 125, 225} <= set(np.unique(vert).tolist())
    np.testing.assert_array_equal(vert, lumbarised.vert_mask)
    write_spider(tmp_path / "spider", [(1, lumbarised)], sequences=("t2",))
    mask, _ = read_image(tmp_path / "spider" / "masks" / "1_t2.mha")
    assert set(np.unique(mask).tolist()) == {0, 1, 2, 3, 4, 5, 6, 100, 107, *range(201, 208)}


def test_cli_transitional_vertebra(tmp_path):
    from nnunetv2_symtc.cli import main

    assert main(["phantom", "-o", str(tmp_path / "t13"), "--format", "spineps", "-n", "1", "--tiny",
                 "--transitional-vertebra", "T13"]) == 0
    vert, _ = read_image(next((tmp_path / "t13").glob("sub-*_seg-vert_msk.nii.gz")))
    assert {28, 128, 228} <= set(np.unique(vert).tolist())
    assert main(["phantom", "-o", str(tmp_path / "ssm"), "--format", "ssmspine", "-n", "1",
                 "--transitional-vertebra", "L6"]) == 1
