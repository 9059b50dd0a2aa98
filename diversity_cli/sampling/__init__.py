"""Sampling: a denoiser over diffusers networks, and one sampler for the paper's five methods."""
