"""The package as users install it: shipped files found through importlib.resources, a user's own config folder
added to the search path, the version line."""

from __future__ import annotations

import csv
from importlib.metadata import version
from pathlib import Path

from diversity_cli.core.config import CONF_ENV, available, compose, conf_dir
from diversity_cli.core.resources import data_path, display, shipped


def test_shipped_files_are_package_resources(tmp_path, monkeypatch):
    # The config tree and data files are found inside the package, whatever the working directory.
    monkeypatch.chdir(tmp_path)
    assert conf_dir() == shipped("conf")
    assert (conf_dir() / "generate.yaml").is_file()
    shipped_prompts = data_path("data/toy_prompts.txt")
    assert shipped_prompts.is_file() and shipped_prompts.is_relative_to(shipped("data"))
    assert display(shipped_prompts) == "data/toy_prompts.txt"
    # A file of the same name in the working directory is the user's, and wins.
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "toy_prompts.txt").write_text("a circle\n")
    assert data_path("data/toy_prompts.txt") == Path("data/toy_prompts.txt")


def _own_pair(folder: Path) -> None:
    (folder / "model").mkdir(parents=True)
    text = (conf_dir() / "model" / "tiny_sd.yaml").read_text().replace("name: tiny_sd", "name: my_pair")
    assert "name: my_pair" in text
    (folder / "model" / "my_pair.yaml").write_text(text)


def test_user_config_folder_adds_a_model_pair(cli, tmp_path, monkeypatch):
    _own_pair(tmp_path / "conf")
    assert "my_pair" not in available("model")
    monkeypatch.setenv(CONF_ENV, str(tmp_path / "conf"))
    # Added to the shipped entries, not instead of them.
    assert {"my_pair", "tiny_sd", "toy"} <= set(available("model"))
    assert compose("generate", ["model=my_pair"]).model.name == "my_pair"
    assert compose("generate", ["model=tiny_sd"]).model.name == "tiny_sd"
    out = tmp_path / "run"
    code, _, err = cli("generate", "model=my_pair", "prompt=a red circle", "n=1", f"out={out}")
    assert code == 0, err
    with (out / "samples.csv").open(newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert row["model"] == "my_pair" and (out / row["path"]).is_file()


def test_user_config_folder_must_exist(cli, tmp_path, monkeypatch):
    monkeypatch.setenv(CONF_ENV, str(tmp_path / "missing"))
    code, _, err = cli("generate", "n=1", f"out={tmp_path / 'run'}")
    assert code == 2 and CONF_ENV in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_version_names_toolkit_torch_and_diffusers(cli):
    code, out, _ = cli("--version")
    assert code == 0
    from diversity_cli import __version__

    assert out.strip() == f"diversity-cli {__version__} (torch {version('torch')}, diffusers {version('diffusers')})"


def test_checkout_links_conf_and_data_into_the_package():
    # In a checkout the package's conf/ and data/ are the repository's top-level folders (the wheel copies them).
    package = Path(__file__).resolve().parent.parent / "diversity_cli"
    for name in ("conf", "data"):
        link = package / name
        assert link.is_symlink() and link.resolve() == (package.parent / name).resolve()
