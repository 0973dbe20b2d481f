"""What the MSFF bottleneck adds to nnU-Net's U-Nets: parameters and training activation memory.

Activation memory is the total size of the tensors autograd saves for the backward pass during
one forward pass (``torch.autograd.graph.saved_tensors_hooks``), computed on the ``meta`` device:
exact shapes, no compute, so full-size nnU-Net configurations are measured on a laptop CPU.
It counts a tensor once per op that saves it, so absolute numbers overestimate the allocator's
peak; the ratio between the two networks is the figure of interest.

    python benchmarks/msff_overhead.py                       # representative nnU-Net configurations
    python benchmarks/msff_overhead.py --plans P.json -c 3d_fullres   # a real plans file
"""
import argparse
import json
from typing import Dict, List, Tuple

import torch
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

from nnunetv2_symtc.networks import MSFFUNet

PLAIN = "dynamic_network_architectures.architectures.unet.PlainConvUNet"
RESENC = "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet"
REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]


def _arch(dim: int, features: List[int], strides: List[int], resenc: bool) -> Dict:
    """Architecture kwargs shaped like nnU-Net 2.8.1's planners write them."""
    n = len(features)
    kwargs = {"n_stages": n, "features_per_stage": features,
              "conv_op": f"torch.nn.modules.conv.Conv{dim}d", "kernel_sizes": [[3] * dim] * n,
              "strides": [[s] * dim for s in strides], "n_conv_per_stage_decoder": [1 if resenc else 2] * (n - 1),
              "conv_bias": True, "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
              "norm_op_kwargs": {"eps": 1e-5, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
              "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
    if resenc:
        kwargs["n_blocks_per_stage"] = [1, 3, 4, 6, 6, 6, 6, 6][:n]
    else:
        kwargs["n_conv_per_stage"] = [2] * n
    return kwargs


# (name, class, arch kwargs, patch size, batch size): nnU-Net's usual choices for a 2D 512² and
# a 3D 128³ isotropic configuration, plus ResEnc M 3D.
CONFIGURATIONS: List[Tuple[str, str, Dict, Tuple[int, ...], int]] = [
    ("2d 512x512 (default plans)", PLAIN, _arch(2, [32, 64, 128, 256, 512, 512, 512, 512], [1] + [2] * 7, False),
     (512, 512), 12),
    ("3d_fullres 128^3 (default plans)", PLAIN, _arch(3, [32, 64, 128, 256, 320, 320], [1] + [2] * 5, False),
     (128, 128, 128), 2),
    ("3d_fullres 128^3 (ResEnc M plans)", RESENC, _arch(3, [32, 64, 128, 256, 320, 320], [1] + [2] * 5, True),
     (128, 128, 128), 2),
]


def saved_activation_bytes(network: torch.nn.Module, batch: torch.Tensor) -> int:
    total = 0

    def pack(tensor):
        nonlocal total
        total += tensor.numel() * tensor.element_size()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        network(batch)
    return total


def measure(name: str, class_name: str, arch_kwargs: Dict, patch: Tuple[int, ...], batch_size: int) -> Dict:
    with torch.device("meta"):
        unet = get_network_from_plans(class_name, arch_kwargs, REQUIRES_IMPORT, 1, 4, allow_init=False,
                                      deep_supervision=True)
        batch = torch.empty(batch_size, 1, *patch)
        plain_memory = saved_activation_bytes(unet, batch)
        plain_params = sum(p.numel() for p in unet.parameters())
        network = MSFFUNet(unet)
        msff_memory = saved_activation_bytes(network, batch)
        msff_params = sum(p.numel() for p in network.msff.parameters())
    return {"configuration": name, "plain_params": plain_params, "added_params": msff_params,
            "plain_GiB": plain_memory / 2 ** 30, "added_MiB": (msff_memory - plain_memory) / 2 ** 20,
            "batch": batch_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plans", help="an nnU-Net plans .json to measure instead of the built-in configurations")
    parser.add_argument("-c", default="3d_fullres", help="configuration in --plans (default 3d_fullres)")
    args = parser.parse_args()
    configurations = CONFIGURATIONS
    if args.plans:
        with open(args.plans) as f:
            configuration = json.load(f)["configurations"][args.c]
        arch = configuration["architecture"]
        configurations = [(f"{args.plans}:{args.c}", arch["network_class_name"], arch["arch_kwargs"],
                           tuple(configuration["patch_size"]), configuration["batch_size"])]
    print(f"{'configuration':36s} {'batch':>5s} {'params':>12s} {'+MSFF params':>13s} {'+%':>6s} "
          f"{'activations':>12s} {'+MSFF':>10s} {'+%':>6s}")
    for name, class_name, arch_kwargs, patch, batch_size in configurations:
        r = measure(name, class_name, arch_kwargs, patch, batch_size)
        print(f"{r['configuration']:36s} {r['batch']:5d} {r['plain_params']:12,d} {r['added_params']:13,d} "
              f"{100 * r['added_params'] / r['plain_params']:6.2f} {r['plain_GiB']:9.2f} GiB "
              f"{r['added_MiB']:6.1f} MiB {100 * r['added_MiB'] / 1024 / r['plain_GiB']:6.2f}")


if __name__ == "__main__":
    main()
