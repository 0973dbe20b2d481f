"""Contrast-agnostic image synthesis from label maps (SynthSeg-style domain randomisation).

``synthesize(labels, rng)`` draws an image from a label map that describes the whole field of
view; ``SynthesisTransform`` applies it per training sample inside nnU-Net's augmentation
pipeline (``trainers.synth``); ``generation_labels`` prepares a dataset's generation label maps
for it.
"""
from nnunetv2_symtc.synthesis.generator import SynthesisSettings, synthesize

__all__ = ["SynthesisSettings", "synthesize"]
