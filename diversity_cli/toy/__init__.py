"""The built-in toy world: procedural scenes (`data`), a factor classifier (`features`), and the toy base model's
training (`train`, the `train-toy` command)."""
