"""Names the schemas share with the layers above core (kept equal to them by tests/test_config_schema.py)."""

from __future__ import annotations

from ..errors import UserError

# sampling/methods.py: METHODS and USES_BASE_KNOBS
METHODS = ("base", "distilled", "hybrid", "skip_first", "replace_final")
USES_BASE_KNOBS = ("hybrid", "replace_final")
SEED_MAX = 2**32 - 1  # numpy's and torch's generators both take it; seed + j must stay an unsigned 32-bit integer
# metrics/embedders.py: EMBEDDERS (the distances diversity averages); experiments/diversity.py also measures these
EMBEDDER_NAMES = ("dreamsim", "lpips", "clip", "dino", "pixel", "toy_features")
OTHER_DIVERSITY_METRICS = ("vendi", "toy_coverage", "toy_adherence", "clip_score")
ADHERENT = "@adherent"  # a metric measured over the on-prompt images only (diversity adherent_only=true)


def seeds_in_range(cfg, root) -> None:
    """Sample j of a prompt uses seed + j: the last one must stay a seed the generators take."""
    seed, n = cfg.get("seed"), cfg.get("n")
    if cfg.get("prompts") is not None:  # a table's rows may carry their own seeds: read_prompts checks the rows
        return
    if isinstance(seed, int) and isinstance(n, int) and n >= 1 and seed + n - 1 > SEED_MAX:
        raise UserError(
            f"seed={seed} with n={n} reaches seed {seed + n - 1}, above the largest seed {SEED_MAX}; "
            f"give seed <= {SEED_MAX - n + 1}"
        )


def diversity_row_metric(name: str) -> bool:
    """A metric diversity.csv's rows can name: an embedder, vendi_<embedder> (`vendi` is written so), toy_coverage or
    clip_score, each also with the @adherent suffix, and toy_adherence (always over every image)."""
    if name == "toy_adherence":
        return True
    name = name.removesuffix(ADHERENT)
    return name in (*EMBEDDER_NAMES, "toy_coverage", "clip_score") or name.removeprefix("vendi_") in EMBEDDER_NAMES
