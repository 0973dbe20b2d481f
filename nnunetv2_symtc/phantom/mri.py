"""MR appearance of a rasterised phantom: tissue contrast, texture, partial volume, bias and noise.

``render`` turns the fine tissue map of ``painting.Rasterised`` into one sequence's image:

1. each fine voxel gets its tissue's signal (``CONTRAST``, jittered per subject) times a smooth
   texture (marrow heterogeneity, abdominal content);
2. the ``supersample`` sub-slices of each thick sagittal slice are averaged (partial volume) and
   the in-plane point-spread function blurs by ~half a voxel;
3. a smooth multiplicative bias field (posterior spine coil plus a low-order random component);
4. Rician noise: the magnitude of signal plus complex Gaussian noise.

Signals are in arbitrary scanner-like units (CSF on T2 ≈ 1000).
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

from nnunetv2_symtc.phantom import anatomy as A
from nnunetv2_symtc.phantom import painting as P

SEQUENCES: Tuple[str, ...] = ("t1", "t2", "t2_SPACE")
"""Sequences the phantom renders (SPIDER's names); t2_SPACE uses T2 contrast on its own grid."""

CONTRAST: Dict[int, Tuple[float, float]] = {
    P.AIR: (0.0, 0.0),
    P.FAT: (0.95, 0.80),
    P.MUSCLE: (0.35, 0.22),
    P.CORTEX: (0.08, 0.06),
    P.CSF: (0.12, 1.00),
    P.CORD: (0.45, 0.42),
    P.ANNULUS: (0.30, 0.16),
    P.ABDOMEN: (0.45, 0.40),
    P.BOWEL_FLUID: (0.20, 0.75),
    P.VESSEL: (0.10, 0.05),
    P.LIGAMENT: (0.08, 0.06),
    P.POSTERIOR_MARROW: (0.60, 0.33),
    P.SACRAL_MARROW: (0.72, 0.40),
    P.EPIDURAL_FAT: (0.90, 0.70),
    P.URINE: (0.10, 0.95),
    P.NERVE_ROOT: (0.40, 0.35),
    P.BOWEL_WALL: (0.30, 0.18),
    P.SYNOVIAL: (0.15, 0.70),
}
"""Tissue -> (T1w, T2w) relative signal. T2: CSF > nucleus > marrow; T1: marrow and fat bright, CSF dark."""
VERTEBRAL_MARROW = (0.70, 0.38)
NUCLEUS = (0.35, 0.80)
TEXTURE_AMPLITUDE = {P.ABDOMEN: 0.18, P.MUSCLE: 0.06, P.FAT: 0.05, P.POSTERIOR_MARROW: 0.10, P.SACRAL_MARROW: 0.10}
MARROW_TEXTURE = 0.10
SIGNAL_SCALE = 1000.0


def tissue_signal(sequence: str, anatomy: A.SpineAnatomy, rng: np.random.Generator) -> np.ndarray:
    """Look-up table tissue class -> signal for one subject (jittered by ±8 % per tissue)."""
    column = 0 if sequence == "t1" else 1
    table = np.zeros(P.N_TISSUES, dtype=np.float32)
    for tissue, values in CONTRAST.items():
        table[tissue] = values[column]
    for k in range(len(anatomy.bones)):
        table[P.MARROW_BASE + k] = VERTEBRAL_MARROW[column] * rng.uniform(0.92, 1.08)
    for k, brightness in enumerate(anatomy.nucleus_brightness):
        # Degenerated (darker) nuclei on T2; T1 hardly changes.
        table[P.NUCLEUS_BASE + k] = NUCLEUS[column] * (brightness if column == 1 else 1.0)
    table *= rng.uniform(0.92, 1.08, size=P.N_TISSUES).astype(np.float32)
    return table * SIGNAL_SCALE


def texture_amplitudes() -> np.ndarray:
    amplitude = np.zeros(P.N_TISSUES, dtype=np.float32)
    for tissue, value in TEXTURE_AMPLITUDE.items():
        amplitude[tissue] = value
    amplitude[P.MARROW_BASE:P.NUCLEUS_BASE] = MARROW_TEXTURE
    return amplitude


def _smooth_1d(rng: np.random.Generator, n: int, amplitude: float) -> np.ndarray:
    """1 + a random smooth curve over ``n`` samples (two low-frequency cosines)."""
    x = np.linspace(0.0, 1.0, n)
    curve = sum(rng.uniform(-1, 1) * np.cos(np.pi * k * x + rng.uniform(0, np.pi)) for k in (1, 2))
    return (1.0 + amplitude * curve / 2).astype(np.float32)


def bias_field(rng: np.random.Generator, shape: Tuple[int, int, int], spacing_zyx, strength: float) -> np.ndarray:
    """Smooth multiplicative field (n_lr, n_si, n_ap): a posterior coil falloff times random curves."""
    n_lr, n_si, n_ap = shape
    depth_mm = np.arange(n_ap)[::-1] * spacing_zyx[2]  # distance from the posterior edge (spine coil)
    coil = (1.0 - strength) + strength * np.exp(-depth_mm / rng.uniform(120.0, 200.0))
    coil = coil / coil.max()
    return (_smooth_1d(rng, n_lr, strength * 0.4)[:, None, None]
            * _smooth_1d(rng, n_si, strength)[None, :, None]
            * (coil.astype(np.float32) * _smooth_1d(rng, n_ap, strength * 0.5))[None, None, :])


def render(raster: P.Rasterised, anatomy: A.SpineAnatomy, sequence: str, spacing_zyx, rng: np.random.Generator,
           noise: float = 0.03, bias: float = 0.25) -> np.ndarray:
    """One sequence's image (float32, (n_lr, n_si, n_ap)) from a rasterised phantom.

    ``noise`` is the Rician noise level relative to the brightest tissue; ``bias`` the bias
    field strength (0 = none).
    """
    if sequence not in SEQUENCES:
        raise ValueError(f"unknown sequence {sequence!r}; choose from {SEQUENCES}")
    table = tissue_signal(sequence, anatomy, rng)
    tissue = raster.tissue
    texture_rng = np.random.default_rng(anatomy.texture_seed + 1)
    texture = P.smooth_field(texture_rng, tissue.shape[1:], 4.0 / spacing_zyx[2])
    signal = table[tissue] * (1.0 + texture_amplitudes()[tissue] * texture[None])
    n_lr = tissue.shape[0] // raster.supersample
    image = signal.reshape(n_lr, raster.supersample, *tissue.shape[1:]).mean(axis=1)
    image = ndimage.gaussian_filter(image, sigma=(0.0, 0.45, 0.45), truncate=2.5)
    if bias > 0:
        image *= bias_field(rng, image.shape, spacing_zyx, bias)
    if noise > 0:
        sigma = noise * SIGNAL_SCALE
        real = image + np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
        image = np.hypot(real, np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32))
    return image.astype(np.float32)
