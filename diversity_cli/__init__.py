"""diversity-cli: hybrid base/distilled diffusion sampling and its measurements (Gandikota & Bau, 2025)."""

import os

# Under CPU contention OpenMP's default busy-waiting made torch with 2 threads about 10x slower than with 1
# (measured on 2-core machines); passive waiting keeps threads a speed-up. OpenMP reads it once, when torch
# loads, so it is set on importing the package, before any command imports torch. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# Every torch.load in the process reads tensors only, whatever its caller asks: torch-fidelity's Inception and
# torchvision's hub cache (the LPIPS backbone) ask for weights_only=False, and a pickle planted in such a weights
# file would run its code. torch reads this at each load; with both variables set it refuses every load.
os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
os.environ.pop("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", None)

__version__ = "0.1.0"
