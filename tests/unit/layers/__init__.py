"""Units of the layers above the backbone runtime, on a deterministic runtime (no model)."""
