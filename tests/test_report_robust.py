"""`report` on runs that changed or were damaged after they were measured: an unreadable image, an adapter retrained
since transfer-lora, images added to a group only some tables show, a hand-edited CSV without a column, FID over
fewer images than its feature dimensions."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from diversity_cli.core.config import compose
from diversity_cli.core.rundir import SAMPLE_COLUMNS
from diversity_cli.reporting.tables import build_tables, load_run, read_paper, to_markdown

REPO = Path(__file__).resolve().parent.parent
TABLE4 = ("hybrid_k1", "skip_first")  # Table 4's rows; Table 2's are base, distilled, hybrid_k1


def write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    columns = list(dict.fromkeys(c for row in rows for c in row))
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, restval="")
        writer.writeheader()
        writer.writerows(rows)


def write_samples(root: Path, counts: dict[str, int], prompt: str = "a shape") -> list[Path]:
    """`counts[tag]` toy images of each method tag, and their samples.csv rows."""
    from PIL import Image

    rows, paths = [], []
    for tag, count in counts.items():
        for seed in range(count):
            path = f"toy/{tag}/{seed:06d}.png"
            (root / path).parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (16, 16), (40 * seed % 256, 90, 200)).save(root / path)
            paths.append(root / path)
            rows.append(
                {"method": tag.split("_k")[0], "model": "toy", "prompt": prompt, "seed": seed, "k": 1, "steps": 4,
                 "nfe": 4, "seconds": 0.1, "path": path, "base_guidance": 0.0, "base_steps": "", "tag": tag,
                 "settings": "x"}
            )  # fmt: skip
    write_csv(root / "samples.csv", [{c: row.get(c, "") for c in SAMPLE_COLUMNS} for row in rows])
    return paths


def fid_row(tag: str, n: int, **values: str) -> dict:
    return {"method": tag, "model": "toy", "n": n, **values, "seconds_per_image": "0.2", "reference": "toy"}


def tables_of(root: Path, keys: tuple[str, ...]):
    cfg = compose("report", [])
    cfg.mapping["3"].prompts = str(REPO / "data" / "table3_prompts.txt")
    return build_tables([load_run(root)], read_paper(REPO / "data" / "paper_tables.csv"), cfg, keys)


def stale(table) -> list[str]:
    return [note for note in table.notes if note.startswith("**out of date**:")]


# ----------------------------------------------------------------------------------------- a damaged image


def test_an_unreadable_image_is_marked_in_the_grid_and_the_report_completes(cli, tmp_path: Path):
    root = tmp_path / "run"
    damaged = write_samples(root, {"base": 3})[1]
    write_csv(root / "diversity.csv", [{"method": "base", "model": "toy", "prompt": "a shape", "n": 3,
                                       "metric": "toy_features", "value": "0.3"}])  # fmt: skip
    damaged.write_bytes(damaged.read_bytes()[:40])  # a write cut short
    code, _, err = cli("report", f"out={root}", "figures=false", "tables=[3]")
    assert code == 0, err
    page = (root / "report.html").read_text()
    assert f"[unreadable {damaged}]" in page and page.count("<img src='data:image/") == 2
    assert "warning" in err and damaged.name in err


# ------------------------------------------------------------------------------ an adapter retrained since


def write_adapter(folder: Path, value: float) -> str:
    """A one-layer LoRA file in `folder`; its hash as transfer-lora records it."""
    import torch
    from safetensors.torch import save_file

    from diversity_cli.models.adapters import read_adapter

    folder.mkdir(parents=True, exist_ok=True)
    save_file({"unet.layer.lora_A.weight": torch.full((2, 2), value)}, str(folder / "pytorch_lora_weights.safetensors"))
    return read_adapter(str(folder)).digest


def transfer_run(root: Path, digest: str, file: Path | None) -> Path:
    """transfer.csv of the toy adapter `red` (hash `digest`, read from `file`; None: a row written before
    transfer.csv named the file)."""
    write_csv(
        root / "transfer.csv",
        [{"adapter": "red", "concept": "red", "source": "base", "target": target, "n": 8, "change_pct": "",
          "classifier_without": "0.125", "classifier_with": "0.5", "classifier_target": "color=red", "model": "toy",
          "scale": "1", "kind": "lora", "prompts": "a shape", "adapter_hash": digest,
          **({"adapter_file": str(file)} if file else {})}
         for target in ("base", "distilled")],
    )  # fmt: skip
    return root


def test_table_1_says_when_an_adapter_was_retrained_or_removed_since(tmp_path: Path):
    folder = tmp_path / "adapters" / "red"
    digest = write_adapter(folder, 1.0)
    file = folder / "pytorch_lora_weights.safetensors"
    root = transfer_run(tmp_path / "run", digest, file)
    assert not stale(tables_of(root, ("1",))["1"])
    retrained = write_adapter(folder, 2.0)
    (note,) = stale(tables_of(root, ("1",))["1"])
    assert f"red ({file}): {digest} in transfer.csv, now {retrained}" in note.replace("\\", "")
    assert "with overwrite=true" in note  # a rerun without it is refused (the images exist)
    assert not stale(tables_of(transfer_run(tmp_path / "older", digest, None), ("1",))["1"])  # nothing to check
    file.unlink()  # moved, or the run copied from the cluster: not known to be out of date, and said so
    table = tables_of(root, ("1",))["1"]
    assert not stale(table)
    assert any("not checked" in note and "not found here" in note and str(file) in note.replace("\\", "")
               for note in table.notes)  # fmt: skip


def test_table_1_says_an_older_row_was_measured_with_an_adapter_since_retrained(tmp_path: Path):
    """The adapter retrained in place, then transfer-lora run again at another concept: its newest row has the new
    hash, and the report checked only that one, so the first concept's cells (the old weights) read as current.
    Each cell also names its adapter file's hash, so two files under one name are told apart."""
    folder = tmp_path / "adapters" / "red"
    digest = write_adapter(folder, 1.0)
    file = folder / "pytorch_lora_weights.safetensors"
    root = transfer_run(tmp_path / "run", digest, file)
    retrained = write_adapter(folder, 2.0)
    with (root / "transfer.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    newer = [{**row, "concept": "blue", "classifier_target": "color=blue", "adapter_hash": retrained} for row in rows]
    write_csv(root / "transfer.csv", rows + newer)
    table = tables_of(root, ("1",))["1"]
    (note,) = stale(table)
    assert f"red ({file}): {digest} in transfer.csv, now {retrained}" in note.replace("\\", "")
    assert "blue" not in note and retrained not in note.split("now")[0]
    shown = {line.measured_as for line in table.measured}
    assert any(f"(scale 1, adapter {digest})" in text for text in shown), shown
    assert any(f"(scale 1, adapter {retrained})" in text for text in shown), shown
    # the cells themselves, not only the notes: the old adapter's are marked, the current one's not
    marked = {text.split(")")[0] for text in shown if "[out of date: its adapter file changed since]" in text}
    assert marked == {f"toy / red (scale 1, adapter {digest}"}, shown


# ------------------------------------------------------------------ a stale group another table does not show


def test_a_tables_out_of_date_note_names_only_groups_it_shows(tmp_path: Path):
    """fid.csv measured 4 images of each method; 2 more distilled ones came later. Table 2 shows distilled and
    says so; Table 4 (hybrid and skip-first) does not show it and has nothing out of date."""
    root = tmp_path / "run"
    tags = ("base", "distilled", *TABLE4)
    write_samples(root, dict.fromkeys(tags, 4))
    write_csv(root / "fid.csv", [fid_row(tag, 4, fid_toyfeat="3.5") for tag in tags])
    write_samples(root, {tag: 6 if tag == "distilled" else 4 for tag in tags})
    tables = tables_of(root, ("2", "4"))
    (note,) = stale(tables["2"])
    assert "toy / distilled against toy: n=4, samples.csv's images 6" in note
    assert not stale(tables["4"])


# -------------------------------------------------------------------------------- a CSV without a column


@pytest.mark.parametrize(
    ("name", "row", "column"),
    [
        (
            "diversity.csv",
            {"method": "base", "model": "toy", "n": 3, "metric": "toy_features", "value": "0.3"},
            "prompt",
        ),
        ("fid.csv", {"model": "toy", "n": 3, "fid_toyfeat": "3.5", "reference": "toy"}, "method"),
        (  # Figure 5's points: a KeyError's traceback, after tables/ was written
            "commitment.csv",
            {"method": "base", "prompt": "a circle", "seed": 0, "step": 0, "timestep": 999, "fraction": "0.04"},
            "distance",
        ),
        ("commitment_summary.csv", {"method": "base", "steps": 25, "threshold": 0.25}, "committed_fraction"),
    ],
)
def test_a_csv_without_a_column_the_tables_need_is_one_line(cli, tmp_path: Path, name: str, row: dict, column: str):
    root = tmp_path / "run"
    write_samples(root, {"base": 3})
    write_csv(root / name, [row])
    code, _, err = cli("report", f"out={root}", "html=false")
    assert code == 2
    assert f"{root / name} has no column '{column}'" in " ".join(err.split())
    assert "Traceback" not in err and not (root / "tables").exists()


# ------------------------------------------------------------------------------------ FID over few images


@pytest.mark.parametrize(
    ("column", "n", "dimensions"),
    [("fid_toyfeat", 8, 128), ("fid_toyfeat", 128, None), ("fid", 500, 2048), ("fid", 30000, None)],
)
def test_fid_over_fewer_images_than_feature_dimensions_carries_a_note(tmp_path: Path, column, n, dimensions):
    root = tmp_path / "run"
    write_csv(root / "fid.csv", [fid_row(tag, n, **{column: "922.1"}) for tag in ("base", "distilled")])
    text = " ".join(to_markdown(tables_of(root, ("2",))["2"]).split())
    if dimensions is None:
        assert "feature dimensions" not in text
    else:
        assert (
            f"FID over {n} images (`{column}`), fewer than its {dimensions} feature dimensions, is biased upward"
            in text
        )
        assert "has no interval: it orders no methods at this n, nor beside the paper's" in text


def test_an_fid_of_another_image_preparation_is_its_own_labelled_cell(tmp_path: Path):
    """fid resolution=64 wrote the same labels as the default's and replaced its row; its cell now names it."""
    root = tmp_path / "run"
    write_samples(root, {"base": 4})
    rows = [fid_row("base", 4, fid_toyfeat="3.5", features="toy"), fid_row("base", 4, fid_toyfeat="3.1")]
    rows[1]["features"] = "toy(resolution=64)"
    write_csv(root / "fid.csv", rows)
    cells = {line.measured_metric: line.measured for line in tables_of(root, ("2",))["2"].measured}
    assert cells["fid_toyfeat"] == "3.5" and cells["fid_toyfeat[resolution=64]"] == "3.1"


def test_tables_md_says_which_tables_an_earlier_report_wrote(cli, tmp_path: Path):
    """make reproduce-table* reports into one tables folder: tables.md held an earlier target's table as if this
    report had checked it (its run's images may have been remade since)."""
    shared = tmp_path / "tables"
    diversity_run, fid_run = tmp_path / "div", tmp_path / "fid"
    write_samples(diversity_run, {"base": 3})
    write_csv(diversity_run / "diversity.csv", [{"method": "base", "model": "toy", "prompt": "a shape", "n": 3,
                                                "metric": "toy_features", "value": "0.3"}])  # fmt: skip
    write_samples(fid_run, {"base": 4})
    write_csv(fid_run / "fid.csv", [fid_row("base", 4, fid_toyfeat="3.5")])
    args = ("figures=false", "html=false", f"tables_dir={shared}")
    assert cli("report", f"out={diversity_run}", "tables=[3]", *args)[0] == 0
    assert "earlier report" not in (shared / "tables.md").read_text()
    assert cli("report", f"out={fid_run}", "tables=[2]", *args)[0] == 0
    table2, _, table3 = (shared / "tables.md").read_text().partition("## Table 3")
    assert "## Table 2" in table2 and "earlier report" not in table2
    assert "As an earlier report wrote it" in table3.split("\n", 3)[2]  # right under the heading


def test_a_table_these_runs_no_longer_measure_is_said_out_of_date(cli, tmp_path):
    """diversity.csv removed and remeasured with a metric no table shows: the run's own tables/table_3.md from the
    first report stayed, and the report called it "an earlier report's, kept" ("rerun that report to refresh it",
    which it just was)."""
    out = tmp_path / "run"
    for method in ("base", "distilled"):
        assert cli("generate", "model=toy", f"method={method}", "prompt=a shape", "n=3", f"out={out}")[0] == 0
    assert cli("diversity", f"out={out}")[0] == 0
    assert cli("report", f"out={out}", "tables=[3]", "html=false")[0] == 0
    (out / "diversity.csv").unlink()
    assert cli("diversity", f"out={out}", "metric=[vendi_pixel]")[0] == 0
    code, stdout, err = cli("report", f"out={out}", "tables=[3,D1]", "html=false")
    assert code == 0, err
    assert "was written from them before and is out of date" in " ".join(stdout.split()), stdout
    assert "diversity.csv also holds vendi_pixel, which no table shows" in " ".join(err.split()), err


def test_a_diversity_without_an_interval_says_why(cli, tmp_path):
    """diversity bootstrap=0: Table 3's cells stood bare, with no word why (a reader takes a missing interval for a
    negligible one)."""
    out = tmp_path / "run"
    assert cli("generate", "model=toy", "method=base", "prompt=a shape", "n=3", f"out={out}")[0] == 0
    for bootstrap, said in (("bootstrap=0", True), ("bootstrap=1000", False)):
        assert cli("diversity", f"out={out}", bootstrap)[0] == 0
        assert cli("report", f"out={out}", "tables=[3]", "html=false")[0] == 0
        table = (out / "tables" / "table_3.md").read_text()
        assert ("a measured diversity without [low, high]: no interval was computed" in table) == said, table


def test_a_table_not_asked_for_is_not_called_out_of_date_and_one_that_is_says_so_in_its_file(
    cli, tmp_path, monkeypatch
):
    """`report tables=[3]` after a report of every table headed Table 2 "Out of date ... hold no measurement for it
    now" in tables.md, though the run still held its fid.csv; with fid.csv gone, table_2.md itself kept its numbers
    unmarked; and the run named by another path (relative, then absolute) was taken for another report's. A
    relative name from another folder is not matched by name alone: another run may share it."""
    run = tmp_path / "run"
    write_samples(run, {"base": 3})
    write_csv(run / "diversity.csv", [{"method": "base", "model": "toy", "prompt": "a shape", "n": 3,
                                       "metric": "toy_features", "value": "0.3"}])  # fmt: skip
    write_csv(run / "fid.csv", [fid_row("base", 3, fid_toyfeat="3.5")])
    monkeypatch.chdir(tmp_path)
    assert cli("report", "out=run", "tables=[2,3]", "html=false")[0] == 0
    assert cli("report", f"out={run}", "tables=[3]", "html=false")[0] == 0
    table2 = (run / "tables" / "tables.md").read_text().partition("## Table 3")[0]
    assert "Out of date" not in table2 and "not asked for by this report" in table2, table2

    (run / "fid.csv").rename(tmp_path / "fid.csv")
    code, stdout, err = cli("report", f"out={run}", "tables=[2,3]", "html=false")  # `run` then, absolute now
    assert code == 0 and "was written from them before and is out of date" in " ".join(stdout.split()), stdout
    own = (run / "tables" / "table_2.md").read_text().split("\n")
    assert own[2].startswith("*Out of date: written") and "3.5" in "\n".join(own), own
    combined = (run / "tables" / "tables.md").read_text()
    assert combined.count("*Out of date: written") == 1, combined  # the file's own note, not a second

    other = tmp_path / "elsewhere" / "run"  # another run of the same name, measured nothing: not this table's
    write_samples(other, {"base": 3})
    write_csv(other / "diversity.csv", [{"method": "base", "model": "toy", "prompt": "a shape", "n": 3,
                                         "metric": "toy_features", "value": "0.4"}])  # fmt: skip
    tables = f"tables_dir={run / 'tables'}"
    code, stdout, _ = cli("report", f"out={other}", "tables=[2,3]", tables, "html=false")
    assert code == 0 and "is an earlier report's, kept" in " ".join(stdout.split()), stdout

    (tmp_path / "fid.csv").rename(run / "fid.csv")  # measured again: a report not asking for Table 2 calls it that
    assert cli("report", f"out={run}", "tables=[3]", "html=false")[0] == 0
    table2 = (run / "tables" / "tables.md").read_text().partition("## Table 3")[0]
    assert "Out of date" not in table2 and "not asked for by this report" in table2, table2


def test_a_cell_two_fid_rows_fill_comes_from_the_current_one(tmp_path):
    """fid against two references: seconds_per_image (one column for both) came from the first row of fid.csv, an
    older one over 4 images where the run now holds 6, though a current row had it: `0.259 [out of date] (n=4)`."""
    write_samples(tmp_path, {"base": 6})
    old = {**fid_row("base", 4, fid_toyfeat="3.5"), "seconds_per_image": "0.259"}
    new = {**fid_row("base", 6, fid_toyfeat="3.1"), "seconds_per_image": "0.247", "reference": "toy(per_prompt=20)"}
    write_csv(tmp_path / "fid.csv", [old, new])
    measured = tables_of(tmp_path, ("2",))["2"].measured
    cells = {line.measured_metric: line for line in measured}
    fids = [line.measured_metric for line in measured if line.metric == "fid"]  # the columns keep fid.csv's order
    assert fids == ["fid_toyfeat", "fid_toyfeat[ref=toy(per_prompt=20)]"], fids
    seconds = cells["seconds_per_image"]
    assert (seconds.measured, str(seconds.n)) == ("0.247", "6") and "[out of date]" not in seconds.measured_as
    assert "[out of date]" in cells["fid_toyfeat"].measured_as  # the older FID stays, marked, in its own column


def test_a_table_with_no_measurement_names_the_command_a_run_with_images_lacks(cli, tmp_path):
    """fid.csv but no diversity.csv: "table 3: no measurement in these runs" alone, with no word that the run held
    images diversity had not measured, nor what to run."""
    run = tmp_path / "run"
    write_samples(run, {"base": 3})
    write_csv(run / "fid.csv", [fid_row("base", 3, fid_toyfeat="3.5")])
    code, stdout, err = cli("report", f"out={run}", "tables=[2,3]", "html=false")
    said = "".join(stdout.split())  # as wrapped at any width, even inside a path
    assert code == 0 and f"hasimagesandnodiversity.csv:`diversity-clidiversityout={run}`" in said, stdout
    assert "nofid.csv" not in said  # Table 2 had its measurement


def test_the_page_of_an_x0viz_run_names_its_pair(tmp_path):
    """An x0viz run keeps no samples.csv: its page said "pairs: -" though commitment_summary.csv names the pair."""
    from diversity_cli.reporting.report import _header

    write_csv(tmp_path / "commitment_summary.csv", [{"method": "base", "prompt": "a shape", "model": "toy",
                                                      "metric": "pixel", "committed_fraction": "0.3"}])  # fmt: skip
    assert "pairs: toy; 0 image(s) in samples.csv" in _header(load_run(tmp_path))


def test_a_mean_in_a_table_csv_carries_no_floating_point_noise():
    from diversity_cli.reporting.tables.common import mean_of

    assert mean_of(["0.0819", "0.0820", "0.0818"]) == "0.0819"  # it wrote 0.08189999999999999
    assert mean_of(["0.25", "", "x", "0.5"]) == "0.375" and mean_of(["", "n/a"]) == ""
    assert mean_of(["1e-11", "3e-11"]) == "2e-11"  # significant digits, not decimals: not 0.0
