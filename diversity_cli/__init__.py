"""diversity-cli: hybrid base/distilled diffusion sampling and its measurements (Gandikota & Bau, 2025)."""

__version__ = "0.1.0"
