"""The sampling methods (kept import-light: the CLI validates against them before loading torch)."""

METHODS = ("base", "distilled", "hybrid", "skip_first", "replace_final")
# Methods where the base model runs inside the distilled schedule, so k / base_guidance / base_steps matter.
USES_BASE_KNOBS = ("hybrid", "replace_final")
