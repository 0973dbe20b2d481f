"""The generation model: a label map and a random state in, an image out (a pure function).

For each draw (``synthesize``):

1. every label value gets a Gaussian intensity distribution: mean uniform in ``[0, 1]`` and
   standard deviation up to ``max_label_std`` (independent per label, so any brightness ordering
   of the tissues occurs: T1-, T2-, PD-like and contrasts no scanner makes);
2. a smooth texture field modulates each label by its own random amplitude (marrow and soft
   tissue heterogeneity);
3. a Gaussian blur with a random width per axis (resolution and slice thickness of the scan);
4. a smooth multiplicative bias field (log-amplitude up to ``max_bias``);
5. Rician noise (magnitude of signal plus complex Gaussian noise, level up to ``max_noise``);
6. min-max scaling to ``[0, 1]``, a random gamma and, with ``inversion_probability``, inversion;
7. z-scoring (mean 0, standard deviation 1), as nnU-Net normalises MR images.

The label map is read, never written; the image has its shape (any number of axes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np
from scipy import ndimage


@dataclass(frozen=True)
class SynthesisSettings:
    """Ranges of the generation model (intensities relative to the ``[0, 1]`` label means; widths
    in voxels of the label map). ``blur_sigma_voxels`` is drawn per axis; ``field_cells`` is the
    number of control points per axis of the bias and texture fields."""

    max_label_std: float = 0.08
    max_texture: float = 0.15
    blur_sigma_voxels: Tuple[float, float] = (0.0, 1.2)
    max_bias: float = 0.5
    max_noise: float = 0.06
    gamma_log_std: float = 0.3
    inversion_probability: float = 0.1
    field_cells: int = 5

    def __post_init__(self):
        low, high = self.blur_sigma_voxels
        if not 0.0 <= low <= high:
            raise ValueError(f"blur_sigma_voxels must be 0 <= low <= high, got {self.blur_sigma_voxels}")
        if not 0.0 <= self.inversion_probability <= 1.0:
            raise ValueError(f"inversion_probability must be in [0, 1], got {self.inversion_probability}")
        if self.field_cells < 2:
            raise ValueError(f"field_cells must be at least 2, got {self.field_cells}")
        for name in ("max_label_std", "max_texture", "max_bias", "max_noise", "gamma_log_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")


def _smooth_field(rng: np.random.Generator, shape: Tuple[int, ...], cells: int) -> np.ndarray:
    """A smooth random field of ``shape`` (standard normal control points, cubic interpolation)."""
    coarse = rng.standard_normal([cells] * len(shape))
    zoomed = ndimage.zoom(coarse, [max(n, 1) / cells for n in shape], order=3, mode="nearest", grid_mode=True)
    return zoomed[tuple(slice(0, n) for n in shape)].astype(np.float32)


def synthesize(labels: np.ndarray, rng: np.random.Generator,
               settings: SynthesisSettings = SynthesisSettings()) -> np.ndarray:
    """An image (float32, the shape of ``labels``, z-scored) drawn from the integer label map
    ``labels`` with ``rng``; the same labels and generator state give the same image."""
    labels = np.asarray(labels)
    if labels.size == 0 or labels.ndim == 0:
        raise ValueError(f"label map must be a non-empty array, got shape {labels.shape}")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"label map must be integer, got {labels.dtype}")
    values, index = np.unique(labels, return_inverse=True)
    index = index.reshape(labels.shape)
    n = values.size
    means = rng.uniform(0.0, 1.0, n).astype(np.float32)
    stds = rng.uniform(0.0, settings.max_label_std, n).astype(np.float32)
    texture_amplitude = rng.uniform(0.0, settings.max_texture, n).astype(np.float32)
    image = means[index] + stds[index] * rng.standard_normal(labels.shape, dtype=np.float32)
    image *= 1.0 + texture_amplitude[index] * _smooth_field(rng, labels.shape, 2 * settings.field_cells)
    sigma = rng.uniform(*settings.blur_sigma_voxels, size=labels.ndim)
    image = ndimage.gaussian_filter(image, sigma=sigma, truncate=3.0)
    bias = rng.uniform(0.0, settings.max_bias)
    image *= np.exp(bias * _smooth_field(rng, labels.shape, settings.field_cells))
    noise = np.float32(rng.uniform(0.0, settings.max_noise))
    image = np.hypot(image + noise * rng.standard_normal(labels.shape, dtype=np.float32),
                     noise * rng.standard_normal(labels.shape, dtype=np.float32))
    low, high = float(image.min()), float(image.max())
    image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    image = image ** np.float32(np.exp(rng.normal(0.0, settings.gamma_log_std)))
    if rng.random() < settings.inversion_probability:
        image = 1.0 - image
    std = float(image.std())
    image = (image - image.mean()) / std if std > 0 else np.zeros_like(image)
    return image.astype(np.float32)
