"""The built-in toy world: procedural scenes (`data`), a factor classifier (`features`), and the toy base model's
training (`train`, the `train-toy` command)."""


def is_toy_pair(model_cfg) -> bool:
    """A pair of the toy world (`toy`, `toy_dpdmd`, a retrained release's pairs): its images are toy scenes, so
    the toy judge (adherence, toy_features, fid_toyfeat) applies to them."""
    return str(model_cfg.name).startswith("toy")
