"""Import the SymTC authors' checkpoints (``best.pth``) into our ``SymTC``.

The reference ``best.pth`` is a pickled dict whose ``'model_state_dict'`` holds the weights in the
public repository's layout (``T0a.cnn_block.conv.0.weight``, ``T1a.attn_block.attn_layers.0.MHA.Q.mlp1.0.weight``,
``M2.proj1.weight``, ``seghead.conv.3.weight``, ...). ``convert_reference_state_dict`` renames
every live parameter to ours and drops the reference's dead ones (the unused ``mlp0`` of the query
and key encoders, the unused positional ``Sin`` branch ``MHA.pos``) and its position-grid buffers
(we compute positions at run time). The result loads strictly into ``SymTC`` of the inferred width
and is written as ``{'network_weights': ...}`` for nnU-Net's ``-pretrained_weights``.
"""
import re
import warnings
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from nnunetv2_symtc.networks.symtc import SymTC
from nnunetv2_symtc.errors import InputError, InputFileError

DEAD_PATTERNS = (r"\.MHA\.Q\.mlp0\.", r"\.MHA\.K\.mlp0\.", r"\.MHA\.pos\.", r"\.cal_abs_pos\.grid$")
"""Reference keys with no counterpart: parameters that never get a gradient, and the position buffer."""

_BLOCK_HOME = {"T0a": "encoder", "T1a": "encoder", "T2a": "encoder", "T3a": "encoder",
               "M2": "decoder", "T2b": "decoder", "M1": "decoder", "T1b": "decoder", "M0": "decoder",
               "T0b": "decoder"}

_RENAMES = (  # (reference pattern, our replacement), applied to the key after the block name
    (r"^cnn_block\.conv\.0\.", "cnn.body.0."),
    (r"^cnn_block\.conv\.3\.", "cnn.body.2."),
    (r"^cnn_block\.conv\.6\.", "cnn.body.4."),
    (r"^cnn_block\.res_path\.", "cnn.residual."),
    (r"^attn_block\.patch_layer\.", "attention.embed."),
    (r"^attn_block\.patch_norm\.", "attention.embed_norm."),
    (r"^attn_block\.attn_out\.0\.", "attention.out_norm."),
    (r"^attn_block\.attn_out\.1\.", "attention.out."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.P\.", r"attention.layers.\1.attention.position_codes."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.Q\.norm\.", r"attention.layers.\1.attention.query_norm."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.Q\.mlp1\.", r"attention.layers.\1.attention.query_content."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.Q\.mlp2\.", r"attention.layers.\1.attention.query_position."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.K\.norm\.", r"attention.layers.\1.attention.key_norm."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.K\.mlp1\.", r"attention.layers.\1.attention.key_content."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.V\.0\.", r"attention.layers.\1.attention.value_norm."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.V\.1\.", r"attention.layers.\1.attention.value."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.proj1\.", r"attention.layers.\1.attention.proj_value."),
    (r"^attn_block\.attn_layers\.(\d+)\.MHA\.proj2\.0\.", r"attention.layers.\1.attention.proj_position."),
    (r"^attn_block\.attn_layers\.(\d+)\.MLP\.0\.", r"attention.layers.\1.mlp_norm."),
    (r"^attn_block\.attn_layers\.(\d+)\.MLP\.1\.", r"attention.layers.\1.mlp.0."),
    (r"^attn_block\.attn_layers\.(\d+)\.MLP\.3\.", r"attention.layers.\1.mlp.2."),
    (r"^proj1\.", "proj_up."),
    (r"^proj2\.", "proj_skip."),
)


def is_dead_reference_key(key: str) -> bool:
    """True for reference keys that have no counterpart in our network (see ``DEAD_PATTERNS``)."""
    return any(re.search(p, key) for p in DEAD_PATTERNS)


def map_reference_key(key: str) -> Optional[str]:
    """Our parameter name for a live reference key; ``None`` for a dead one; ``ValueError`` if unknown."""
    if is_dead_reference_key(key):
        return None
    if key.startswith("seghead.conv.1."):
        return "decoder.head.conv." + key[len("seghead.conv.1."):]
    if key.startswith("seghead.conv.3."):
        return "decoder.seg_layers.0." + key[len("seghead.conv.3."):]
    block, _, rest = key.partition(".")
    if block in _BLOCK_HOME:
        for pattern, replacement in _RENAMES:
            if re.search(pattern, rest):
                return f"{_BLOCK_HOME[block]}.{block}." + re.sub(pattern, replacement, rest)
    raise ValueError(f"unknown key {key!r} in the reference state dict (not part of the public SymTC layout)")


def _without_ddp_prefix(state_dict: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """Drop the ``module.`` prefix (DataParallel/DDP) from every key."""
    return {k[len("module."):] if k.startswith("module.") else k: v for k, v in state_dict.items()}


def reference_width(state_dict: Dict[str, torch.Tensor]) -> Dict[str, int]:
    """``SymTC`` keyword arguments read from the reference weights' shapes."""
    try:
        embed = state_dict["T0a.attn_block.patch_layer.weight"]
        classes = state_dict["seghead.conv.3.weight"].shape[0]
        position_proj = state_dict["T0a.attn_block.attn_layers.0.MHA.proj2.0.weight"]
    except KeyError as e:
        raise ValueError(f"reference state dict lacks {e.args[0]!r}; is this a SymTC checkpoint?") from None
    layers = []
    for block in ("T0a", "T1a", "T2a", "T3a"):
        indices = {int(m.group(1)) for k in state_dict
                   if (m := re.match(rf"{block}\.attn_block\.attn_layers\.(\d+)\.", k))}
        layers.append(len(indices))
    return dict(input_channels=embed.shape[1], num_classes=classes, embed_dim=embed.shape[0],
                num_heads=position_proj.shape[1] // 2, num_layers=tuple(layers))


def convert_reference_state_dict(state_dict: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], SymTC]:
    """Our state dict (loads strictly) and a ``SymTC`` of the matching width with it loaded."""
    state_dict = _without_ddp_prefix(state_dict)
    width = reference_width(state_dict)
    network = SymTC(**width)
    ours = network.state_dict()
    converted: Dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        target = map_reference_key(key)
        if target is None:
            continue
        if target in converted:
            raise ValueError(f"two reference keys map to {target!r}")
        if target not in ours:
            raise ValueError(f"reference key {key!r} maps to {target!r}, which SymTC{width} does not have")
        if ours[target].shape != value.shape:
            raise ValueError(f"reference key {key!r} has shape {tuple(value.shape)}, {target!r} expects "
                             f"{tuple(ours[target].shape)}")
        converted[target] = value.detach().clone().float()
    missing = sorted(set(ours) - set(converted))
    if missing:
        raise ValueError(f"the reference state dict lacks weights for {len(missing)} of our parameters, "
                         f"e.g. {missing[:3]}")
    network.load_state_dict(converted, strict=True)
    return converted, network


def import_reference_checkpoint(reference: Path, output: Path) -> Dict[str, int]:
    """Read the authors' ``best.pth`` (pickle: trusted files only), write ``{'network_weights': ...}``.

    Returns the inferred width (``SymTC`` keyword arguments).
    """
    reference, output = Path(reference), Path(output)
    if not reference.is_file():
        raise InputFileError(f"{reference}: no such checkpoint file")
    warnings.warn(f"loading {reference} with weights_only=False (it pickles an argparse Namespace and "
                  "optimiser state): this can run arbitrary code, load only files you trust", stacklevel=2)
    checkpoint = torch.load(reference, map_location="cpu", weights_only=False)
    if not isinstance(checkpoint, dict) or "model_state_dict" not in checkpoint:
        keys = list(checkpoint)[:5] if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise InputError(f"{reference}: expected the authors' best.pth, a dict with 'model_state_dict'; got {keys}")
    try:
        converted, _ = convert_reference_state_dict(checkpoint["model_state_dict"])
    except ValueError as e:
        raise InputError(f"{reference}: {e}") from None
    output.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"network_weights": converted}, output)
    return reference_width(_without_ddp_prefix(checkpoint["model_state_dict"]))
