"""Everything that runs a model, and its file I/O (DESIGN: source -> conversion -> nnU-Net ->
inference -> post-processing -> evaluation).

- ``inputs``: reading and checking images and given semantic masks (``--semantic-input``)
- ``two_phase``: ``TwoPhasePredictor`` and ``predict_folder`` (``symtc predict``)
- ``outputs``: masks, centroids, snapshot and metadata of one case
- ``postprocess``: ``symtc postprocess`` on files
- ``ensemble``: ensembles of nnU-Net models (``symtc ensemble``)
- ``robustness``: perturbed test images through a model (``symtc robustness``)

Array-level logic lives in ``instance``; ``instance`` never imports ``inference``.
"""
