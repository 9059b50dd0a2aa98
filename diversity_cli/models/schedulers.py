"""Making a diffusers scheduler from a config plus the user's overrides, so that every override is used.

diffusers' `from_config` drops a setting its class does not take with a logged warning (which the toolkit
silences): a misspelt `timestep_spacnig=trailing` would run the default schedule under a record that says
otherwise. Here it is one line naming the setting instead.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import refused_as
from ..core.pair_settings import unknown_scheduler_setting


def plain_config(config: dict) -> dict:
    """A scheduler config without its private keys: `_use_default_values` would make another class's
    `from_config` drop the values it names (e.g. a DPM-Solver config's timestep_spacing) and our overrides too."""
    return {key: value for key, value in dict(config).items() if not key.startswith("_")}


def scheduler_with(cls: type, config: dict, overrides: dict[str, Any], where: str) -> Any:
    """`cls` from `config` with `overrides` on top. `where` names the overrides (`model.base.scheduler.overrides`):
    a value `cls` refuses, or a setting it does not take, is one line under that name."""
    with refused_as(f"{where}: {cls.__name__} cannot be made"):
        scheduler, unused = cls.from_config(config, return_unused_kwargs=True, **overrides)
    for name in sorted(set(unused) & set(overrides)):
        unknown_scheduler_setting(cls, name, where)
    return scheduler
