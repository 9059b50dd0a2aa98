"""Files that ship with the toolkit: the config tree (`conf/`), data files (`data/`) and model assets (`assets/`).

They are found through `importlib.resources`, so the same code works from a checkout (where `diversity_cli/conf`
and `diversity_cli/data` are links to the repository's top-level folders) and from an installed wheel (where they
are copies inside the package).
"""

from __future__ import annotations

import functools
from importlib.resources import files
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

PACKAGE = "diversity_cli"


def shipped(*parts: str) -> Path:
    """The path of a file or folder shipped inside the package, e.g. `shipped("data", "coco_30k.csv")`."""
    resource = files(PACKAGE).joinpath(*parts)
    # Installed as a folder on disk (wheel or checkout), a resource is a real path; zipped installs are unsupported
    # because Hydra and the model loaders need directories.
    return Path(str(resource))


def conf_root() -> Path:
    return shipped("conf")


@functools.cache
def shipped_config(name: str) -> DictConfig:
    """conf/<name>.yaml as shipped (read only, read once a process): the defaults a run's settings are set against,
    to say which of them a number was measured with."""
    config = OmegaConf.load(conf_root() / f"{name}.yaml")
    OmegaConf.set_readonly(config, True)
    return config


def data_file(name: str) -> Path:
    return shipped("data", name)


def asset(relative: str) -> Path:
    return shipped("assets", *relative.split("/"))


def data_path(value: str | Path) -> Path:
    """A data file as the user gave it: from the working directory when it exists there, else the shipped copy
    (`data/coco_30k.csv` works from any directory)."""
    path = Path(str(value)).expanduser()
    if path.exists() or path.is_absolute():
        return path
    parts = path.parts
    if parts and parts[0] == "data":
        return shipped(*parts)
    return path


def display(path: Path) -> str:
    """A shipped file named as the repository names it (`data/paper_tables.csv`), anything else as given."""
    try:
        return str(Path("data") / path.resolve().relative_to(shipped("data").resolve()))
    except ValueError:
        return str(path)
