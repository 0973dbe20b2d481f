"""What the user looks at: the two-phase snapshot (mid-sagittal slice, one colour per level)."""
import numpy as np
from matplotlib.colors import rgb_to_hsv

from nnunetv2_symtc.inference.outputs import level_colours, snapshot_overlay, snapshot_slice, write_snapshot
from nnunetv2_symtc.labels import L1_ID, SPINEPS_DISC_OFFSET, SPINEPS_ENDPLATE_OFFSET, VERTEBRA_IDS_TOP_TO_BOTTOM
from nnunetv2_symtc.phantom import PhantomConfig, generate_subject


def test_snapshot_shows_every_level_on_the_mid_sagittal_slice(tmp_path):
    subject = generate_subject(1, PhantomConfig.tiny())
    z = snapshot_slice(subject.spine_mask)
    counts = (subject.spine_mask > 0).sum(axis=(1, 2))
    assert counts[z] == counts.max() and z not in (0, subject.shape[0] - 1)
    overlay = snapshot_overlay(subject.vert_mask[z])
    l1 = subject.vert_mask[z] == L1_ID
    assert l1.any(), "the phantom's L1 crosses the mid-sagittal slice"
    assert (overlay[l1, 3] > 0).all(), "L1 (20) is drawn"
    assert np.allclose(overlay[l1, :3], level_colours()[L1_ID, :3])
    assert (overlay[subject.vert_mask[z] == 0, 3] == 0).all()
    for value in np.unique(subject.vert_mask[z]):
        if value:
            assert (overlay[subject.vert_mask[z] == value, 3] > 0).all(), f"value {value} is hidden"
    assert write_snapshot(tmp_path / "snp.png", subject.images["t2"], subject.spine_mask, subject.vert_mask,
                          subject.geometry.spacing_zyx) == z
    assert (tmp_path / "snp.png").read_bytes()[:4] == b"\x89PNG"


def test_level_colours_are_distinct_and_discs_endplates_match_their_level():
    table = level_colours()
    vertebrae = table[list(VERTEBRA_IDS_TOP_TO_BOTTOM), :3]
    distances = np.linalg.norm(vertebrae[:, None] - vertebrae[None], axis=-1)
    np.fill_diagonal(distances, np.inf)
    assert distances.min() > 0.05, "every vertebra id has its own colour"
    neighbours = np.linalg.norm(vertebrae[1:] - vertebrae[:-1], axis=-1)
    assert neighbours.min() > 0.3, "neighbouring levels contrast"
    for v in VERTEBRA_IDS_TOP_TO_BOTTOM:
        hues = rgb_to_hsv(table[[v, SPINEPS_DISC_OFFSET + v, SPINEPS_ENDPLATE_OFFSET + v], :3])[:, 0]
        assert np.allclose(hues, hues[0], atol=0.02), f"disc/endplate colours of {v} follow its level"
