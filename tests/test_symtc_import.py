"""Import of the SymTC authors' checkpoints: key mapping, equality with the reference math, CLI."""
import argparse
import re
import warnings

import pytest
import torch
from nnunetv2.run.load_pretrained_weights import load_pretrained_weights

from nnunetv2_symtc.cli import main
from nnunetv2_symtc.networks import SymTC
from nnunetv2_symtc.networks.reference_checkpoint import (convert_reference_state_dict, is_dead_reference_key,
                                                          map_reference_key)

from reference_symtc import random_reference_state_dict, reference_forward, reference_layout

SMALL_E = dict(embed_dim=32, num_heads=4, num_layers=(1, 2, 1, 1))


def test_paper_layout_maps_one_to_one_onto_the_paper_config():
    layout = reference_layout(1, 12, 512, 16, (2, 2, 2, 2))
    assert sum(torch.Size(s).numel() for s in layout.values()) == 144_980_844   # REFERENCE §2 total
    ours = {k: tuple(v.shape) for k, v in SymTC.paper_config(1, 12).state_dict().items()}
    mapped = {}
    dead = 0
    for key, shape in layout.items():
        target = map_reference_key(key)
        if target is None:
            dead += torch.Size(shape).numel()
            continue
        assert target not in mapped, f"{key} and {mapped[target]} both map to {target}"
        assert ours[target] == shape, key
        mapped[target] = key
    assert set(mapped) == set(ours)
    assert dead == 33_101_824                                                      # REFERENCE §2 dead count
    assert is_dead_reference_key("T1b.attn_block.attn_layers.1.MHA.pos.0.weight")
    assert is_dead_reference_key("T0a.attn_block.cal_abs_pos.grid")
    with pytest.raises(ValueError, match="unknown key"):
        map_reference_key("T0a.attn_block.something_else.weight")


def test_imported_network_equals_the_reference_math():
    layout = reference_layout(1, 5, **SMALL_E)
    state = random_reference_state_dict(layout, seed=1)
    _, network = convert_reference_state_dict({"module." + k: v for k, v in state.items()})  # DDP-saved keys
    x = 4.0 * torch.randn(2, 1, 64, 96) + 10.0    # non-square: catches an x/y swap
    with torch.no_grad():
        ours = network.eval()(x)
        expected = reference_forward(state, x, SMALL_E["num_heads"], SMALL_E["num_layers"])
    assert ours.shape == expected.shape == (2, 5, 64, 96)
    assert (ours - expected).abs().max() <= 1e-4


def test_convert_rejects_incomplete_or_mismatched_state_dicts():
    state = random_reference_state_dict(reference_layout(1, 5, **SMALL_E))
    incomplete = {k: v for k, v in state.items() if not k.startswith("M1.proj2.")}
    with pytest.raises(ValueError, match="lacks weights"):
        convert_reference_state_dict(incomplete)
    wrong = dict(state)
    wrong["T2a.cnn_block.conv.3.weight"] = torch.zeros(3, 3, 1, 1)
    with pytest.raises(ValueError, match="shape"):
        convert_reference_state_dict(wrong)


def write_reference_checkpoint(path, state):
    """A file shaped like the authors' best.pth: weights, optimiser state and an argparse Namespace."""
    optimizer = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))])
    torch.save({"model_state_dict": state, "optimizer_state_dict": optimizer.state_dict(),
                "args": argparse.Namespace(embed_dim=32, n_heads=4, lr=1e-4), "epoch": 3}, path)


def test_cli_writes_a_pretrained_weights_file_for_another_class_count(tmp_path, capsys):
    state = random_reference_state_dict(reference_layout(1, 12, **SMALL_E))
    write_reference_checkpoint(tmp_path / "best.pth", state)
    with pytest.warns(UserWarning, match="trust"):
        assert main(["import-checkpoint", "--reference", str(tmp_path / "best.pth"),
                     "-o", str(tmp_path / "out" / "symtc.pth")]) == 0
    printed = capsys.readouterr().out
    assert "none of our trainers builds" in printed and "E=32, 4 heads" in printed and "nnUNetv2_train" not in printed
    # nnU-Net's own -pretrained_weights loader, into a network for 4 classes (not 12): every layer
    # but the class-dependent seg_layers is transferred.
    target = SymTC(1, 4, **SMALL_E)
    before = target.decoder.seg_layers[0].weight.detach().clone()
    load_pretrained_weights(target, str(tmp_path / "out" / "symtc.pth"))
    converted = torch.load(tmp_path / "out" / "symtc.pth", weights_only=True)["network_weights"]
    loaded = target.state_dict()
    for key, value in converted.items():
        if ".seg_layers." not in key:
            assert torch.equal(loaded[key], value), key
    assert torch.equal(target.decoder.seg_layers[0].weight, before)


def test_cli_reports_bad_files(tmp_path, capsys):
    torch.save({"state_dict": {}}, tmp_path / "other.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["import-checkpoint", "--reference", str(tmp_path / "other.pth"), "-o", str(tmp_path / "o.pth")]) == 1
        assert main(["import-checkpoint", "--reference", str(tmp_path / "missing.pth"), "-o", str(tmp_path / "o.pth")]) == 1
    err = capsys.readouterr().err
    assert re.search(r"other\.pth.*model_state_dict", err) and "missing.pth" in err
