"""Training recipes used by the trainers (optimisers, schedules, gradient clipping, loss weights)."""
