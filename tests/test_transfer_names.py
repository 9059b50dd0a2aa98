"""Two adapters whose folders share a name, transferred into one out=: the second one's images would go where the
first's are, and the refusal advised overwrite=true (replacing the first adapter's images) as the only way on."""

from __future__ import annotations

import csv
from pathlib import Path

from test_transfer import PROMPT, save_random_lora


def test_a_second_adapter_of_the_same_name_is_told_to_take_a_name_of_its_own(cli, tiny_pairs, tmp_path: Path):
    pair = tiny_pairs("tiny_sd")
    first = save_random_lora(pair, tmp_path / "a" / "random", seed=0)
    second = save_random_lora(pair, tmp_path / "b" / "random", seed=1)
    out = tmp_path / "run"
    common = ("transfer-lora", "model=tiny_sd", f"concept={PROMPT}", f"prompt={PROMPT}", "n=2",
              "clip_model=tiny_random", f"out={out}")  # fmt: skip
    assert cli(*common, f"adapter={first}")[0] == 0
    code, _, err = cli(*common, f"adapter={second}")
    assert code == 2 and "give it a name of its own (adapter_name=" in " ".join(err.split()), err
    code, _, err = cli(*common, f"adapter={second}", "adapter_name=random_b")  # as the advice says: both kept
    assert code == 0, err
    with (out / "transfer.csv").open(newline="") as f:
        assert {row["adapter"] for row in csv.DictReader(f)} == {"random", "random_b"}
