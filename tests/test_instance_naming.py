"""Fragments never take a level; level naming rules and sequences (T13, L6, user override);
implausible body candidates never reach phase 2.

The real-scan tests use tptbox's sample MRI (``tptbox_sample`` in conftest: read from the installed
package, never copied).
"""
import numpy as np
import pytest

from nnunetv2_symtc.instance.centres import body_candidates, vertebral_body_centres
from nnunetv2_symtc.instance.labeling import absorb_fragments, clean_instances, level_ids, name_vertebrae
from nnunetv2_symtc.labels import (L5_ID, SACRUM, SACRUM_ID, SPINEPS_DISC_OFFSET, T13_ID, VERTEBRA_VALUES,
                                   VERTEBRAL_BODY, ids_upward_from, levels_up_to_c1)
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject


@pytest.fixture(scope="module")
def tptbox_vertebrae(tptbox_sample):
    """tptbox's real cervical sample: semantic mask, vertebra-only instance map (C5-C7), spacing."""
    _, semantic, instance, geometry = tptbox_sample
    vertebrae = np.where(np.isin(semantic, VERTEBRA_VALUES) & (instance < SPINEPS_DISC_OFFSET), instance, 0)
    return semantic, vertebrae.astype(np.uint16), geometry.spacing_zyx


def phantom_candidates(seed: int):
    """A tiny phantom subject, its mobile vertebra ids (top first), vertebra-only map and candidate map."""
    subject = generate_subject(seed, PhantomConfig.tiny())
    ids = [v for v in subject.vertebra_ids if v != SACRUM_ID]
    vertebrae = np.where((subject.vert_mask < SPINEPS_DISC_OFFSET) & (subject.vert_mask != SACRUM_ID),
                         subject.vert_mask, 0)
    return subject, ids, vertebrae, as_candidates(vertebrae, ids)


def as_candidates(vertebrae: np.ndarray, ids_top_to_bottom) -> np.ndarray:
    """Vertebra ids -> candidate numbers 1..n top to bottom (what the phase-2 merge produces)."""
    lut = np.zeros(SACRUM_ID + 1, dtype=np.uint16)
    for number, v in enumerate(ids_top_to_bottom, start=1):
        lut[v] = number
    return lut[vertebrae]


def carve(candidates: np.ndarray, owner: int, voxels: int, new_id: int, lowest: bool) -> np.ndarray:
    """Relabel the ``voxels`` voxels of ``owner`` nearest to its lowest voxel (or its centre) as ``new_id``."""
    coords = np.argwhere(candidates == owner)
    seed = coords[np.argmax(coords[:, 1])] if lowest else coords.mean(axis=0)
    chosen = coords[np.argsort(np.linalg.norm(coords - seed, axis=1), kind="stable")[:voxels]]
    out = candidates.copy()
    out[tuple(chosen.T)] = new_id
    return out


def fragments_then_names(candidates, semantic, spacing, **naming):
    cleaned, _ = clean_instances(candidates, semantic)
    absorbed, records = absorb_fragments(cleaned, semantic, spacing)
    named, info = name_vertebrae(absorbed, semantic, spacing, sacrum_id=None, **naming)
    return named, info, records


def test_fragments_do_not_take_a_level_on_a_real_scan(tptbox_vertebrae):
    semantic, vertebrae, spacing = tptbox_vertebrae
    candidates = as_candidates(vertebrae, [5, 6, 7])
    clean_names, info, records = fragments_then_names(candidates, semantic, spacing, lowest_vertebra=7)
    assert [r["action"] for r in records] == ["kept: cut by the field of view"]  # C5, cut by the top edge
    assert info["ids_top_to_bottom"] == [5, 6, 7]

    # the two fragments of the real run: 5 voxels at C6's lower edge, ~150 voxels inside C7
    broken = carve(carve(candidates, 2, 5, 4, lowest=True), 3, 150, 5, lowest=False)
    named, info, records = fragments_then_names(broken, semantic, spacing, lowest_vertebra=7)
    assert np.array_equal(named, clean_names), "fragments changed the level names"
    assert info["ids_top_to_bottom"] == [5, 6, 7]
    by_id = {r["instance"]: r for r in records}
    assert by_id[4]["action"] == "merged" and by_id[4]["into"] == 2 and by_id[4]["voxels"] == 5
    assert by_id[5]["action"] == "merged" and by_id[5]["into"] == 3 and 140 <= by_id[5]["voxels"] <= 150
    assert by_id[5]["ml"] == pytest.approx(by_id[5]["voxels"] * np.prod(spacing) / 1000, abs=1e-3)
    assert by_id[5]["neighbour_median_ml"] > 10 * by_id[5]["ml"]


def test_fragments_do_not_take_a_level_on_the_phantom():
    subject, ids, vertebrae, candidates = phantom_candidates(3)
    spacing = subject.geometry.spacing_zyx
    broken = carve(carve(candidates, 2, 5, 40, lowest=False), len(ids), 150, 41, lowest=False)
    clean_names, _, _ = fragments_then_names(candidates, subject.spine_mask, spacing)
    assert np.mean(clean_names[vertebrae > 0] == vertebrae[vertebrae > 0]) > 0.95
    named, info, records = fragments_then_names(broken, subject.spine_mask, spacing)
    assert info["rule_source"] == "sacrum" and info["ids_top_to_bottom"] == ids
    assert np.array_equal(named, clean_names), "fragments changed the level names"
    assert {r["instance"]: r["action"] for r in records if not r["action"].startswith("kept")} == \
        {40: "merged", 41: "merged"}


def test_an_isolated_fragment_is_dropped_and_a_cut_vertebra_kept():
    instance = np.zeros((4, 60, 8), dtype=np.uint16)
    instance[:, 0:2] = 1            # a vertebra cut by the top of the field of view: small but kept
    instance[:, 8:20] = 2
    instance[:, 24:36] = 3
    instance[:, 40:52] = 4
    instance[1, 38, 3] = 5          # a one-voxel fragment touching nothing
    semantic = np.where(instance > 0, VERTEBRAL_BODY, 0).astype(np.uint8)
    out, records = absorb_fragments(instance, semantic, (1.0, 1.0, 1.0))
    actions = {r["instance"]: r["action"] for r in records}
    assert actions == {1: "kept: cut by the field of view", 5: "dropped"}
    assert (out == 1).sum() == (instance == 1).sum() and not (out == 5).any()


def test_user_lowest_vertebra_wins_over_the_sacrum():
    ids, rule, source = level_ids(3, True, lowest_vertebra=25)
    assert ids == [23, 24, 25] and source == "user" and "override" in rule
    ids, rule, source = level_ids(3, True)
    assert ids == [22, 23, 24] and source == "sacrum"
    assert level_ids(2, False, None, default_lowest=23)[2] == "default"


def test_t13_and_l6_sequences():
    # above T13 comes T12 (19), never 27 or the sacrum (26)
    assert ids_upward_from(T13_ID, 3) == [T13_ID, 19, 18]
    assert level_ids(4, False, lowest_vertebra=T13_ID)[0] == [17, 18, 19, T13_ID]
    # above L6 comes L5 ... L1, then T12
    assert ids_upward_from(25, 7) == [25, 24, 23, 22, 21, 20, 19]
    assert levels_up_to_c1(T13_ID) == 20 and levels_up_to_c1(25) == 25 and levels_up_to_c1(L5_ID) == 24
    ids, _, _ = level_ids(30, False, lowest_vertebra=T13_ID)
    assert len(ids) == 20 and ids[0] == 1 and SACRUM_ID not in ids
    with pytest.raises(ValueError, match="only 20 exist"):
        ids_upward_from(T13_ID, 21)


def test_naming_records_the_rule_source_on_the_phantom():
    subject, ids, _, candidates = phantom_candidates(0)
    spacing = subject.geometry.spacing_zyx
    _, naming = name_vertebrae(candidates, subject.spine_mask, spacing, lowest_vertebra=25, sacrum_id=None)
    assert naming["rule_source"] == "user" and naming["ids_top_to_bottom"][-1] == 25
    assert naming["candidates_top_to_bottom"] == list(range(1, len(ids) + 1))
    no_sacrum = np.where(subject.spine_mask == SACRUM, 0, subject.spine_mask)
    _, naming = name_vertebrae(candidates, no_sacrum, spacing, lowest_vertebra=T13_ID, sacrum_id=None)
    assert naming["ids_top_to_bottom"][-2:] == [19, T13_ID]


def noisy_phase1_map(seed: int = 0):
    """1 mm PIR semantic map, 300 mm superior-inferior: six real bodies (5 ml) plus 400 body-labelled
    specks (36 voxels) a weak phase-1 model might leave behind, away from the bodies."""
    rng = np.random.default_rng(seed)
    semantic = np.zeros((24, 300, 80), dtype=np.uint8)
    for k in range(6):
        semantic[7:17, 30 + 45 * k:55 + 45 * k, 2:22] = VERTEBRAL_BODY
    for z, y, x in zip(rng.integers(0, 21, 400), rng.integers(0, 297, 400), rng.integers(32, 76, 400)):
        semantic[z:z + 3, y:y + 3, x:x + 4] = VERTEBRAL_BODY
    return semantic


def test_a_noisy_phase1_map_sends_few_candidates_to_phase2():
    semantic = noisy_phase1_map()
    spacing = (1.0, 1.0, 1.0)
    raw = vertebral_body_centres(semantic, spacing)
    centres, report, warnings = body_candidates(semantic, spacing)
    assert len(raw) > 100, "the noise multiplies the candidates (specks even get real bodies split into slabs)"
    assert report["capacity"] == 31 and report["below_min_volume"] > 100
    assert len(centres) == report["kept"] <= report["capacity"]
    real = [c for c in centres if c.volume_voxels == 10 * 25 * 20]
    assert len(real) == 6, "every real body survives, unsplit"
    assert [round(c.index_zyx[1]) for c in real] == [42 + 45 * k for k in range(6)]
    assert warnings and f"{report['candidates']} vertebral-body candidates" in warnings[0]


def test_the_field_of_view_caps_the_number_of_candidates():
    semantic = np.zeros((10, 160, 40), dtype=np.uint8)
    for k in range(20):  # 20 separate 1.2 ml bodies 8 mm apart in a 160 mm field of view: at most 17 levels fit
        semantic[2:8, 8 * k:8 * k + 2, 5:15] = VERTEBRAL_BODY
        semantic[2:8, 8 * k, 15:15 + k] = VERTEBRAL_BODY  # each a little larger than the one above
    centres, report, warnings = body_candidates(semantic, (1.0, 1.0, 10.0))
    assert report["capacity"] == 17 and len(centres) == 17 and report["beyond_capacity"] == 3
    volumes = [c.volume_voxels for c in centres]
    assert volumes == sorted(volumes) and volumes[0] == 120 + 6 * 3, "the largest are kept, top to bottom"
    assert "3 beyond the 17 levels a 160.0 mm field of view can hold" in warnings[0]
