"""Image metrics: embedders (`embedders.py`), sample diversity (`diversity.py`), distribution coverage
(`coverage.py`), FID / IS / CLIP score (`quality.py`). Every metric works from one distance matrix of the images'
embeddings, computed in float64 a block at a time; LPIPS, whose embeddings are too large to hold, streams that
matrix per layer and per block of image pairs (`LpipsEmbedder.distances`).
"""
