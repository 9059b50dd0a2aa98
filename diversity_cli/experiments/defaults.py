"""Defaults that fit the model: `metric=auto`, `reference=auto` and a missing prompt take what the pair's
`conf/model/<pair>.yaml` names (`default_metric`, `default_reference`, `default_prompt`), so on the toy pair every
command runs with no extra keys, and on an SDXL pair the defaults are the paper's."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig, ListConfig

from ..core.config import pair_config
from ..core.errors import UserError
from ..core.rundir import RunDir, no_samples

AUTO = "auto"
FOLDER_METRIC = "pixel"  # a plain folder has no pair: the one metric that needs no weights
QUALITY_METRICS = ("clip_score", "toy_adherence")  # quality, not diversity: measured beside it


def _is_auto(value: object) -> bool:
    if isinstance(value, (list, tuple, ListConfig)):  # a typed list key holds [auto]
        return len(value) == 1 and _is_auto(value[0])
    return isinstance(value, str) and value == AUTO


def run_models(out: object) -> list[str]:
    """The pairs whose images a run directory holds (samples.csv's model column), in order."""
    if out is None:
        return []
    return list(dict.fromkeys(row["model"] for row in RunDir(out).read_samples() if row.get("model")))


def _from_pairs(key: str, models: list[str], what: str) -> str | None:
    values = {}
    for name in models:
        model = pair_config(name)
        if model is not None and model.get(key):
            values[name] = str(model.get(key))
    if len(set(values.values())) > 1:
        listed = ", ".join(f"{name}: {value}" for name, value in values.items())
        raise UserError(f"{what}=auto: the run's pairs disagree ({listed}); name one, e.g. {what}={values[models[0]]}")
    return next(iter(values.values()), None)


def apply_defaults(cfg: DictConfig) -> DictConfig:
    """Fill `auto` and missing-prompt keys of a composed command config in place (a no-op when already set)."""
    model = cfg.get("model") if isinstance(cfg.get("model"), DictConfig) else None
    if model is not None and "prompt" in cfg and cfg.get("prompt") is None and cfg.get("prompts") is None:
        if model.get("default_prompt"):
            cfg.prompt = str(model.default_prompt)
    if _is_auto(cfg.get("metric")):
        if model is not None:
            cfg.metric = str(model.get("default_metric") or FOLDER_METRIC)
        elif cfg.get("images") is not None:
            cfg.metric = FOLDER_METRIC
        else:
            cfg.metric = _from_pairs("default_metric", run_models(cfg.get("out")), "metric") or FOLDER_METRIC
    auto_k = cfg.get("auto_k")
    if model is not None and isinstance(auto_k, DictConfig) and _is_auto(auto_k.get("metric")):
        # k=auto's judge, as help offers it: the pair's metric (it reached the embedder as "auto" and failed there)
        auto_k.metric = str(model.get("default_metric") or FOLDER_METRIC)
    if "quality" in cfg:  # diversity: the quality number beside its diversity numbers
        with_quality(cfg, model)
    if _is_auto(cfg.get("reference")) and "coverage_k" not in cfg:  # fid's reference (diversity's means coverage)
        names = [str(model.name)] if model is not None else run_models(cfg.get("out"))
        if not names and cfg.get("images") is None and cfg.get("out") is not None:
            # no pair to ask because there are no samples: say that, not that a pair named no reference
            raise UserError(
                no_samples(Path(str(cfg.out)), " (or give images=<folder> with reference=coco|toy|<folder>)")
            )
        reference = _from_pairs("default_reference", names, "reference")
        if reference is None:
            raise UserError(
                "reference=auto: the run's pair names no default_reference; give reference=coco|toy|<folder>"
            )
        cfg.reference = reference
    measure = cfg.get("measure")
    if model is not None and isinstance(measure, DictConfig):  # ablate: the measurements of its points
        if isinstance(measure.get("fid"), DictConfig) and _is_auto(measure.fid.get("reference")):
            measure.fid.reference = str(model.get("default_reference") or "coco")
    return cfg


def with_quality(cfg: DictConfig, model: DictConfig | None) -> None:
    """quality=auto -> the pair's default_quality (none for a plain folder or a pair naming none); a quality other
    than none joins `metric` when a diversity number is measured, so no diversity number comes without one."""
    if _is_auto(cfg.quality):
        if cfg.get("images") is not None:
            cfg.quality = "none"
        elif model is not None:
            cfg.quality = str(model.get("default_quality") or "none")
        else:
            cfg.quality = _from_pairs("default_quality", run_models(cfg.get("out")), "quality") or "none"
    metrics = list(cfg.metric) if isinstance(cfg.metric, (list, tuple, ListConfig)) else str(cfg.metric).split(",")
    metrics = [str(m).strip() for m in metrics if str(m).strip()]
    if cfg.quality != "none" and cfg.quality not in metrics and any(m not in QUALITY_METRICS for m in metrics):
        cfg.metric = [*metrics, str(cfg.quality)]
