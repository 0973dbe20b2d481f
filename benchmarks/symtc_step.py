"""Forward and forward+backward time and peak memory of SymTC vs nnU-Net's default U-Net.

Cases (batch 1): SymTC paper config at 512²; SymTC3D (paper width) at a typical SPIDER
3d_fullres patch (16×256×256 at 3.3×0.5×0.5 mm); nnU-Net's default PlainConvUNet at the same
patches (the architecture nnU-Net's planner picks for them). Each case runs in its own
subprocess so peak memory is its own:

- CPU: peak resident memory (``VmHWM`` of ``/proc/self/status``, reset through
  ``/proc/self/clear_refs`` after the model is built) minus the resident memory of the built model.
- GPU: ``torch.cuda.max_memory_allocated`` minus the allocation after building, per precision
  (fp32, fp16 and bf16 autocast).

Usage::

    OMP_NUM_THREADS=2 python benchmarks/symtc_step.py                 # CPU, fp32
    python benchmarks/symtc_step.py --device cuda --precision fp32 fp16 bf16

Targets (issue 4; reference implementation, fp32, batch 1, 512², 2-core CPU): forward ≤ 60% of
16–26 s, forward+backward peak ≤ 50% of +3.8 GiB.
"""
import argparse
import contextlib
import json
import os
import subprocess
import sys
import time

CASES = {
    "symtc2d_512": dict(kind="symtc", patch=(512, 512), spacing=(1.0, 1.0)),
    "unet2d_512": dict(kind="unet", patch=(512, 512), spacing=(1.0, 1.0)),
    "symtc3d_spider": dict(kind="symtc", patch=(16, 256, 256), spacing=(3.3, 0.5, 0.5)),
    "unet3d_spider": dict(kind="unet", patch=(16, 256, 256), spacing=(3.3, 0.5, 0.5)),
}
GIB = 2 ** 30


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def build(case: dict, num_classes: int = 12):
    """The network of a case (nnU-Net U-Net via nnU-Net's own planner logic for this patch/spacing)."""
    from dynamic_network_architectures.architectures.unet import PlainConvUNet
    from torch import nn

    from nnunetv2_symtc.networks.from_plans import build_symtc

    if case["kind"] == "symtc":
        return build_symtc(case["patch"], case["spacing"], 1, num_classes, width="paper")
    from nnunetv2.experiment_planning.experiment_planners.network_topology import get_pool_and_conv_props

    dim = len(case["patch"])
    _, pool, conv, patch, _ = get_pool_and_conv_props(case["spacing"], case["patch"], 4, 999999)
    stages = len(pool)
    conv_op, norm = (nn.Conv2d, nn.InstanceNorm2d) if dim == 2 else (nn.Conv3d, nn.InstanceNorm3d)
    features = [min(32 * 2 ** i, 512 if dim == 2 else 320) for i in range(stages)]
    return PlainConvUNet(1, stages, features, conv_op, conv, pool, [2] * stages, num_classes, [2] * (stages - 1),
                         conv_bias=True, norm_op=norm, norm_op_kwargs=dict(eps=1e-5, affine=True),
                         nonlin=nn.LeakyReLU, nonlin_kwargs=dict(inplace=True), deep_supervision=False)


def run_case(name: str, device: str, precision: str, repeats: int) -> dict:
    """Measure one case in this process; returns a JSON-able dict."""
    import torch

    case = CASES[name]
    torch.manual_seed(0)
    network = build(case).to(device)
    x = torch.randn(1, 1, *case["patch"], device=device)
    dtype = dict(fp16=torch.float16, bf16=torch.bfloat16).get(precision)
    amp = torch.autocast(device, dtype=dtype) if dtype is not None else contextlib.nullcontext()

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def forward_backward():
        with amp:
            out = network(x)
        out.float().square().mean().backward()
        network.zero_grad(set_to_none=True)

    def forward():
        with torch.no_grad(), amp:
            network(x)

    def timed(fn, warm_up: bool = True):
        """(wall s, process CPU s) of the fastest of ``repeats`` runs (after a warm-up run)."""
        if warm_up:
            fn()
            sync()
        times = []
        for _ in range(repeats):
            start, cpu = time.perf_counter(), time.process_time()
            fn()
            sync()
            times.append((time.perf_counter() - start, time.process_time() - cpu))
        return min(times)

    result = dict(case=name, device=device, precision=precision,
                  params=sum(p.numel() for p in network.parameters()))
    if device == "cuda":
        base = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        forward_backward()
        result["fwd_bwd_peak_gib"] = (torch.cuda.max_memory_allocated() - base) / GIB
    else:
        base = _rss_kib("VmRSS")
        _reset_peak_rss()
        forward_backward()
        result["fwd_bwd_peak_gib"] = (_rss_kib("VmHWM") - base) / 2 ** 20
    result["forward_s"], result["forward_cpu_s"] = timed(forward)
    result["fwd_bwd_s"], result["fwd_bwd_cpu_s"] = timed(forward_backward, warm_up=False)  # memory run warmed up
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "fp16", "bf16"])
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (fastest is shown)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_case(args.one, args.device, args.precision[0], args.repeats)))
        return
    import torch

    print(f"torch {torch.__version__}, {os.cpu_count()} CPU cores, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}, "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print("times: wall seconds (process CPU seconds, all threads); on a contended machine compare CPU seconds")
    print(f"{'case':16s} {'prec':5s} {'params':>12s} {'forward s':>16s} {'fwd+bwd s':>16s} {'fwd+bwd peak GiB':>17s}")
    for precision in args.precision:
        for name in args.cases:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--device", args.device,
                                   "--precision", precision, "--repeats", str(args.repeats)],
                                  capture_output=True, text=True)
            if proc.returncode:
                print(f"{name:16s} {precision:5s} failed: {proc.stderr.strip().splitlines()[-1]}")
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            forward = f"{r['forward_s']:.2f} ({r['forward_cpu_s']:.1f})"
            both = f"{r['fwd_bwd_s']:.2f} ({r['fwd_bwd_cpu_s']:.1f})"
            print(f"{name:16s} {precision:5s} {r['params']:12,d} {forward:>16s} {both:>16s} "
                  f"{r['fwd_bwd_peak_gib']:17.2f}", flush=True)


if __name__ == "__main__":
    main()
