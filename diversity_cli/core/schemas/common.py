"""Names the schemas share with the layers above core (kept equal to them by tests/test_config_schema.py)."""

from __future__ import annotations

# sampling/methods.py: METHODS and USES_BASE_KNOBS
METHODS = ("base", "distilled", "hybrid", "skip_first", "replace_final")
USES_BASE_KNOBS = ("hybrid", "replace_final")
SEED_MAX = 2**32 - 1  # numpy's and torch's generators both take it; seed + j must stay an unsigned 32-bit integer
