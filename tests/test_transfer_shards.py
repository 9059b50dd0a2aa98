"""Table 1 as shards: `transfer-lora adapters=TABLE shard=I/N` makes and scores block I of the (adapter, prompt)
units, each shard into its own files, and the merge equals one process: images byte for byte, samples.csv row for
row but for timing, transfer.csv and the grids byte for byte. Bad adapter tables are one line, before any model."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from test_transfer import save_random_lora

from diversity_cli.core.config import compose
from diversity_cli.core.rundir import RunDir
from diversity_cli.experiments.shards import Shard
from diversity_cli.experiments.transfer import make_plan, merge_transfer, transfer, transfer_remaining

TIMING = ("seconds", "network_seconds")


def samples(root: Path) -> list[dict[str, str]]:
    with (root / "samples.csv").open(newline="") as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


@pytest.fixture(scope="module")
def table(tiny_pairs, tmp_path_factory) -> Path:
    """Three adapters: a and b on one prompt, c on the command's two prompts (its row leaves the prompt empty)."""
    folder = tmp_path_factory.mktemp("adapters")
    pair = tiny_pairs("tiny_sd")
    for seed, name in enumerate("abc"):
        save_random_lora(pair, folder / name, seed=seed)
    path = folder / "table.csv"
    path.write_text(
        "# adapters of a test table\nname,concept,prompt,scale\na,a cat,a cat,1\nb,a dog,a cat,0.5\nc,a cat,,1\n"
    )
    (folder / "prompts.txt").write_text("a dog\na bird\n")
    return path


def settings(table: Path, out: Path, *extra: str) -> list[str]:
    return [
        "model=tiny_sd", f"adapters={table}", f"prompts={table.parent / 'prompts.txt'}", "n=1", "batch_size=3",
        "clip_model=tiny_random", "grid_seeds=2", "grid_cell=16", f"out={out}", *extra,
    ]  # fmt: skip


def test_table1_shards_by_adapter_and_prompt_merge_into_the_one_process_run(table, tmp_path):
    one, sharded = tmp_path / "one", tmp_path / "sharded"
    plan = make_plan(compose("transfer_lora", settings(table, one)))
    assert [row.prompt for row in plan.rows] == ["a cat", "a dog", "a bird"]
    assert plan.units == [(0, 0), (0, 1), (1, 2), (2, 2)]  # prompt-major (case, adapter): 4 units, c spans two

    transfer(compose("transfer_lora", settings(table, one)))
    expected = samples(one)
    assert len(expected) == 2 * 3 + 2 * 2 + 2 * 2  # without: 2 roles x 3 prompts; a, b; c's 2 prompts

    for index in (1, 3, 0, 2):  # one unit each, in an odd order
        cfg = compose("transfer_lora", settings(table, sharded, f"shard={index}/4"))
        assert transfer_remaining(cfg, Shard(index, 4)) > 0
        assert transfer(cfg) is None
        assert transfer_remaining(cfg, Shard(index, 4)) == 0  # a resubmission skips it
    own = RunDir(sharded, "shards/samples-1-of-4.csv").samples_csv
    with own.open(newline="") as f:  # unit (a cat, b): only b's images; the prompt's plain ones are unit 0's
        assert {row["tag"] for row in csv.DictReader(f)} == {"base+b_s0.5", "distilled+b_s0.5"}
    assert not (sharded / "transfer.csv").exists()

    merge_transfer(compose("transfer_lora", settings(table, sharded)), 4)
    assert samples(sharded) == expected
    for row in expected:
        assert (one / row["path"]).read_bytes() == (sharded / row["path"]).read_bytes(), row["path"]
    grids = sorted(path.name for path in one.glob("transfer_*.png"))
    assert [name.split("_sd_")[1].rsplit("_", 1)[0] for name in grids] == ["a_s1", "b_s0.5", "c_s1"]  # tiny_sd
    for name in ("transfer.csv", *grids):
        assert (sharded / name).read_bytes() == (one / name).read_bytes(), name
    assert not [*(sharded / "shards").glob("samples-*"), *(sharded / "shards").glob("transfer-*")]  # folded in

    with (one / "transfer.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["adapter"], r["concept"], r["target"], r["n"], r["scale"]) for r in rows] == [
        ("a", "a cat", "base", "1", "1"), ("a", "a cat", "distilled", "1", "1"),
        ("b", "a dog", "base", "1", "0.5"), ("b", "a dog", "distilled", "1", "0.5"),
        ("c", "a cat", "base", "2", "1"), ("c", "a cat", "distilled", "2", "1"),
    ]  # fmt: skip
    assert all(float(r["clip_without"]) > 0 and r["change_pct"] for r in rows)


@pytest.mark.parametrize(
    "body, extra, message",
    [
        ("adapter,prompt\na,a cat\n", [], "a header with name"),
        ("name,prompt\na,a cat\na,a dog\n", [], "there twice"),
        ("name,scale\na,strong\n", [], "scale 'strong' is not a number"),
        ("name,scale\na,500\n", [], "outside -100..100"),
        ("name,prompt\nnowhere,a cat\n", [], "nowhere"),
        ("name\n", [], "has no adapters"),
        ("name\na\n", ["adapter=elsewhere"], "not both"),
        ("name\na\n", ["direction=both", "reverse_adapter=x"], "one direction"),
    ],
)
def test_a_bad_adapter_table_is_one_line_before_any_model(cli, table, tmp_path, body, extra, message):
    path = table.parent / f"bad-{abs(hash(body + str(extra)))}.csv"
    path.write_text(body)
    out = tmp_path / "run"
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapters={path}", "prompt=a cat", f"out={out}", *extra)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists()
