"""SPINEPS-style two-phase segmentation: a semantic nnU-Net, then a vertebra-instance nnU-Net on
cutouts around each vertebral body, merged and labelled by level (REFERENCE §5).

- ``centres``: cleaning the semantic mask; vertebral-body centres (merged bodies split, duplicates
  joined) and the plausible candidates sent to phase 2 (``body_candidates``)
- ``cutouts``: the phase-2 cutout grid (physical size, working spacing, padding) and input channels
- ``merge``: neighbour-agreement merge of overlapping cutout predictions, with a per-vertebra record
- ``labeling``: orphan clean-up, fragments, level naming, discs 100+X, endplates 200+X, SPIDER values
- ``assemble``: phase-2 predictions -> the named instance map of one case (merge, clean, name, discs)
- ``phase2_spec``: the phase-2 contract (``Phase2Spec`` in ``dataset.json``, semantic -> input channels)

Running the models and reading/writing files (``symtc predict``, ``symtc postprocess``) is
``nnunetv2_symtc.inference``; nothing here imports it.

The phase-2 training dataset (``symtc instance-dataset``) is a conversion: ``dataset_conversion.phase2_cutouts``.
"""
