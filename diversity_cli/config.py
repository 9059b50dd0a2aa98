"""Hydra composition for every command: `conf/<command>.yaml` plus groups such as `conf/model/`."""

from __future__ import annotations

import os
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from .errors import UserError

CONF_ENV = "DIVERSITY_CLI_CONF"
ASSETS = Path(__file__).resolve().parent / "assets"

# `${asset:toy/base}` in a config: a folder shipped inside the package, wherever it is installed.
OmegaConf.register_new_resolver("asset", lambda relative: str(ASSETS / relative), replace=True)


def conf_dir() -> Path:
    """The config tree: `$DIVERSITY_CLI_CONF`, else the repository's top-level `conf/`."""
    override = os.environ.get(CONF_ENV)
    path = Path(override) if override else Path(__file__).resolve().parent.parent / "conf"
    if not path.is_dir():
        raise UserError(f"config directory {path} not found; set {CONF_ENV} to the repository's conf/ folder")
    return path


def available(group: str) -> list[str]:
    """Entries of a config group, e.g. the model pairs under conf/model/."""
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def compose(command: str, overrides: list[str] | None = None) -> DictConfig:
    """Compose `conf/<command>.yaml` with Hydra-style overrides (`model=sdxl_dmd2 k=2 n=16`)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    overrides = list(overrides or [])
    _check_group_choices(overrides)
    try:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
            cfg = hydra_compose(config_name=command, overrides=overrides)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UserError(f"bad override for '{command}': {first}") from None
    OmegaConf.set_readonly(cfg, False)
    return cfg


def _check_group_choices(overrides: list[str]) -> None:
    # Hydra's own message for an unknown group entry is a multi-line listing; users want the valid names.
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if sep and (conf_dir() / key).is_dir() and "," not in value:
            names = available(key)
            if value not in names:
                raise UserError(f"unknown {key} '{value}'; choose one of: {', '.join(names)}")
