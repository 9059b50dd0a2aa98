"""diversity-cli: hybrid base/distilled diffusion sampling and its measurements (Gandikota & Bau, 2025)."""

import os

# Under CPU contention OpenMP's default busy-waiting made torch with 2 threads about 10x slower than with 1
# (measured on 2-core machines); passive waiting keeps threads a speed-up. OpenMP reads it once, when torch
# loads, so it is set on importing the package, before any command imports torch. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
__version__ = "0.1.0"
