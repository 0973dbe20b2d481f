"""Evaluation: metrics (``metrics``: pure functions on arrays + spacing), folder reports
(``report``: summary.json / CSVs / table / overlays), probability ensembles (``ensemble``) and
robustness sweeps (``robustness``). Metric definitions: ``metrics`` module docstring and
``metrics.DEFINITIONS`` (also written into every summary.json)."""
