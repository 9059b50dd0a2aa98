"""Image metrics: embedders (`embedders.py`), sample diversity (`diversity.py`), distribution coverage
(`coverage.py`). Every metric embeds each image once and works from one distance matrix.
"""
