"""Augmentation choices: anatomy-safe mirroring/rotation, and statistical-shape-model augmentation."""
