"""SPINEPS-style two-phase segmentation: a semantic nnU-Net, then a vertebra-instance nnU-Net on
cutouts around each vertebral body, merged and labelled by level (REFERENCE §5).

- ``centres``: cleaning the semantic mask; vertebral-body centres (merged bodies split, duplicates joined)
- ``cutouts``: the phase-2 cutout grid (physical size, working spacing, padding) and input channels
- ``merge``: neighbour-agreement merge of overlapping cutout predictions, with a per-vertebra record
- ``labeling``: orphan clean-up, level naming, discs 100+X, endplates 200+X, SPIDER values
- ``phase2_spec``: the phase-2 contract (``Phase2Spec`` in ``dataset.json``, semantic -> input channels)
- ``pipeline``: ``symtc predict`` and ``symtc postprocess`` (the only modules that read or write files)

The phase-2 training dataset (``symtc instance-dataset``) is a conversion: ``dataset_conversion.phase2_cutouts``.
"""
