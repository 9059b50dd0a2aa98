"""Table 3: sample diversity per prompt and method (mean pairwise distance), from diversity.csv and ablate.csv,
with an Average row. The paper's rows are prompts, named by the prompt file's line order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from .common import Line, RunData, choose_model, diversity_rows, match_tag, mean_of, origin


def read_prompt_labels(path: Path, conditions: list[str]) -> dict[str, str]:
    """prompt text -> paper row label, from a prompt file whose i-th line is the paper's i-th row."""
    if not path.is_file():
        raise UserError(f"Table 3 prompt file {path} not found (data/table3_prompts.txt ships with the repository)")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    prompts = [ln for ln in lines if ln and not ln.startswith("#")]
    if len(prompts) != len(conditions):
        raise UserError(
            f"{path} has {len(prompts)} prompts but the paper's Table 3 has {len(conditions)} rows "
            f"({', '.join(conditions)}); give one prompt per row, in that order"
        )
    return {prompt.lower(): label for prompt, label in zip(prompts, conditions, strict=True)}


def table3_records(run: RunData, cfg: Any, labels: dict[str, str]) -> list[Line]:
    """diversity.csv -> Table 3 cells of every pair and prompt; `finish_table3` picks the pair and prompts."""
    rows = dict(cfg.rows)
    metrics = {str(m) for m in cfg.metrics}
    records = []
    for row in diversity_rows(run):
        method = match_tag(row["method"], rows)
        if row["metric"] not in metrics or method is None:
            continue  # other settings (ablate's points: Figure 7) are no Table 3 cells
        records.append(
            Line(
                "3",
                method,
                labels.get(row["prompt"].lower(), row["prompt"]),
                "dreamsim_diversity",
                measured_metric=row["metric"],
                measured=row["value"],
                n=row.get("n", ""),
                model=row["model"],
                measured_as=f"{row['model']} / {row['method']} / {row['prompt']}",
                **origin(run, row["_source"]),
            )
        )
    return records


def finish_table3(records: list[Line], cfg: Any, labels: dict[str, str]) -> list[Line]:
    """One pair (the paper's, else a stand-in); the paper's prompts once any is measured (the car of E.1 is no
    Table 3 prompt), else all of the stand-in's; and the Average row."""
    model = choose_model(((line.model, line.method) for line in records), cfg.get("model"))
    records = [line for line in records if line.model == model]
    named = set(labels.values())
    if any(line.condition in named for line in records):
        records = [line for line in records if line.condition in named]
    # Average: per metric, the mean over the prompts measured for every method (the paper averages one prompt set;
    # a prompt only some methods have would tilt the comparison).
    averages = []
    for metric in dict.fromkeys(line.measured_metric for line in records):
        lines = [line for line in records if line.measured_metric == metric]
        methods = dict.fromkeys(line.method for line in lines)
        common = set.intersection(*({line.condition for line in lines if line.method == m} for m in methods))
        for method in methods:
            chosen = [line for line in lines if line.method == method and line.condition in common]
            if chosen:
                averages.append(
                    replace(
                        chosen[0],
                        condition="Average",
                        measured=mean_of([line.measured for line in chosen]),
                        n="/".join(sorted({line.n for line in chosen})),
                        measured_as=f"{model} / mean of {len(chosen)} prompt(s)",
                    )
                )
    return records + averages


def table3_labels(paper: list[Line], cfg: Any) -> dict[str, str]:
    conditions = [line.condition for line in paper if line.table == "3" and line.condition != "Average"]
    return read_prompt_labels(Path(cfg.prompts), list(dict.fromkeys(conditions)))


def build(runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table 3's measured cells of all runs, then one pair, its prompts and the Average row (`finish_table3`)."""
    labels = table3_labels(paper, cfg)
    return finish_table3([line for run in runs for line in table3_records(run, cfg, labels)], cfg, labels)
