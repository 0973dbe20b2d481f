"""Converters from SPIDER, SSMSpine and SPINEPS/BIDS data to nnU-Net raw datasets (one module per source)."""
