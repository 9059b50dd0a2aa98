"""A plain run's tables name the pair settings its images were made with, where the command line changed them:
`toy / base` read as the pair as its config file has it, at CFG 5."""

from __future__ import annotations


def test_a_plain_runs_tables_name_the_pair_settings_its_images_were_made_with(tmp_path, cli):
    """`generate method=base model.base.guidance=5`: Tables 3 and D.1 said `toy / base` as if at the pair's CFG."""
    out = tmp_path / "run"
    for args in (["method=base", "model.base.guidance=5"], ["method=distilled", "preset=paper"]):  # the default
        assert cli("generate", "model=toy", *args, "prompt=a circle", "n=2", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}")[0] == 0
    assert cli("report", f"out={out}", "tables=[3,D1]")[0] == 0
    for name in ("table_3.md", "table_D1.md"):
        notes = [line for line in (out / "tables" / name).read_text().splitlines() if "command line" in line]
        assert notes == [
            f"- toy / base in {out}: its images were made with the pair's settings changed on the command line "
            "(`model.base.guidance=5`), so its cells are not toy as its config file has it"
        ], notes  # the distilled images were made at the pair's settings: nothing said of them


def test_a_setting_of_a_network_the_method_does_not_run_is_not_named(tmp_path, cli):
    """The base's images made with `model.distilled.*` changed were said to be "not toy": the base runs no
    distilled network."""
    from diversity_cli.reporting.tables.common import load_run
    from diversity_cli.reporting.tables.weights import changed_pair_settings

    out = tmp_path / "run"
    for method in ("base", "distilled", "hybrid"):
        args = ("model=toy", f"method={method}", "prompt=a circle", "n=2", "model.distilled.label=mine", f"out={out}")
        assert cli("generate", *args)[0] == 0
    typed = {tag: items for (_, tag), items in changed_pair_settings(load_run(out)).items()}
    assert typed == {
        "base": [],
        "distilled": ["model.distilled.label=mine"],
        "hybrid_k1": ["model.distilled.label=mine"],
    }


def test_table_1_names_the_pair_settings_its_adapters_images_were_made_with(tmp_path, cli):
    """Tables 2-4, D.1 and E.1 named a pair setting typed on the command line; Table 1 did not (the base at CFG 5
    read as the pair's own)."""
    adapter, out = tmp_path / "lora_red", tmp_path / "t1"
    assert cli("train-lora", "concept=red", "steps=2", "images=8", "batch_size=4", f"out={adapter}")[0] == 0
    transfer = ("transfer-lora", f"adapter={adapter}", "prompt=a shape", "n=2", f"out={out}")
    assert cli(*transfer)[0] == 0
    assert cli("report", f"out={out}", "tables=[1]", "html=false")[0] == 0
    assert "changed on the command line" not in (out / "tables" / "table_1.md").read_text()
    assert cli(*transfer, "model.base.guidance=5", "overwrite=true")[0] == 0
    assert cli("report", f"out={out}", "tables=[1]", "html=false")[0] == 0
    text = (out / "tables" / "table_1.md").read_text()
    assert "toy / lora_red in" in text and "changed on the command line (`model.base.guidance=5`)" in text


def test_networks_read_from_a_copy_are_said_apart_from_changed_settings(tmp_path, cli):
    """A faithful local copy of a pair's weights (an offline node's) read "settings changed ... so its cells are
    not toy": where a network is read from is no sampler setting; the records hash what was loaded."""
    import shutil

    from diversity_cli.core.resources import asset

    copy = tmp_path / "student_copy"
    shutil.copytree(asset("toy/dmd_student"), copy)
    out = tmp_path / "run"
    typed = ("model.distilled.guidance=2", f"model.distilled.network.path={copy}")
    assert cli("generate", "model=toy", "method=distilled", "prompt=a circle", "n=2", *typed, f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}")[0] == 0
    assert cli("report", f"out={out}", "tables=[3]")[0] == 0
    (note,) = [line for line in (out / "tables" / "table_3.md").read_text().splitlines() if "command line" in line]
    assert note == (
        f"- toy / distilled in {out}: its images were made with the pair's settings changed on the command line "
        "(`model.distilled.guidance=2`), so its cells are not toy as its config file has it; and its networks were "
        f"read from other places than its config file's (`model.distilled.network.path={copy}`): the weights hashes "
        "in its runs/ records say which networks they are"
    ), note
