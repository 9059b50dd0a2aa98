"""Model-pair loading: real checkpoints from the hub or local copies, and tiny offline pipelines."""
