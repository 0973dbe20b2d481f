"""Evaluation: metrics (``metrics``: pure functions on arrays + spacing), folder reports
(``report``: summary.json / CSVs / table / overlays) and robustness scores and plots
(``robustness``). Ensembles and the robustness sweeps run models: ``nnunetv2_symtc.inference``.
Metric definitions: ``metrics`` module docstring and ``metrics.DEFINITIONS`` (also written into
every summary.json)."""
