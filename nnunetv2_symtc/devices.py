"""One rule for the torch device every command and the demo use."""

DEVICE_CHOICES = ("auto", "cuda", "cpu", "mps")
"""Values of ``-device``: nnU-Net's three devices plus ``auto``."""


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a CUDA device is visible, else ``cpu``. An explicit ``cuda``/``mps``
    must be available (``InputError`` otherwise); ``cpu`` is returned as is."""
    import torch

    from nnunetv2_symtc.errors import InputError

    if device not in DEVICE_CHOICES:
        raise InputError(f"-device {device!r}: choose one of {', '.join(DEVICE_CHOICES)}")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("-device cuda was requested but no CUDA device is visible (use -device cpu or auto)")
    if device == "mps" and not torch.backends.mps.is_available():
        raise InputError("-device mps was requested but no Apple MPS device is available (use -device cpu or auto)")
    return device
