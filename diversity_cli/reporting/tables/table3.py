"""Table 3: sample diversity per prompt and method (mean pairwise distance, with n and its interval), from
diversity.csv and ablate.csv, a quality cell beside each (CLIP score / toy adherence), and average rows. The
paper's rows are prompts, named by the prompt file's line order."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ...core.errors import UserError
from ...metrics.diversity import pooled_interval
from ...metrics.labels import metric_label
from .common import (
    Line,
    RunData,
    as_number,
    choose_model,
    common_to_all,
    diversity_rows,
    match_tag,
    md_literal,
    mean_of,
    one_run_per_group,
    origin,
    preferred_tags,
    quality_lines,
    quality_of,
    tag_rank,
)


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
    """diversity.csv -> Table 3 cells of every pair and prompt, each with its quality cells (CLIP score / toy
    adherence of the same group) beside it; `finish_table3` picks the pair and prompts. A column several of the
    pair's tags could fill (`hybrid_k1` and the toy demo's `hybrid_k1_bs5` in Hybrid) shows one on every prompt
    (`preferred_tags`, a tag measured on all of the column's prompts first); the others' diversity cells follow the
    run's, for `assemble` to name in the notes."""
    return _split_records(run, cfg, labels)[0]


def _split_records(run: RunData, cfg: Any, labels: dict[str, str]) -> tuple[list[Line], list[Line]]:
    """(Table 3's lines of the run, the other tags' diversity cells at a prompt where the column's tag has none):
    those are left out, since a column holds one setting, and said in the notes (`left_out_notes`)."""
    rows = dict(cfg.rows)
    metrics = {str(m) for m in cfg.metrics}
    quality = quality_of(run)
    found = []
    for row in diversity_rows(run):
        method, rank = match_tag(row["method"], rows), tag_rank(row["method"], rows)
        if row["metric"] not in metrics or method is None or rank is None:
            continue  # other settings (ablate's other points: Figure 7) are no Table 3 cells
        found.append((row, method, labels.get(row["prompt"].lower(), row["prompt"]), rank))
    # one tag per column and pair over all prompts, so the Average is over one setting: a tag measured on every
    # prompt the column has (by rank among those), else the best ranked
    prompts_of: dict[tuple[str, str], dict[str, set[str]]] = {}
    for row, method, condition, _ in found:
        prompts_of.setdefault((row["model"], method), {}).setdefault(row["method"], set()).add(condition)

    def order(row: dict[str, str], method: str, rank: int) -> int:  # a tag measured on every prompt first
        return rank - 1000 * _covers(prompts_of[row["model"], method], row["method"])

    column = preferred_tags(
        ((row["model"], method), row["method"], order(row, method, rank)) for row, method, _, rank in found
    )
    shows = {(row["model"], method, condition): column[row["model"], method] for row, method, condition, _ in found}
    records, others, groups = [], [], set()
    for row, method, condition, rank in found:
        line = Line(
            "3",
            method,
            condition,
            "dreamsim_diversity",
            measured_metric=metric_label(row),
            measured=row["value"],
            n=row.get("n", ""),
            ci_low=row.get("ci_low") or "",
            ci_high=row.get("ci_high") or "",
            ci=row.get("ci") or "",
            model=row["model"],
            measured_as=f"{row['model']} / {row['method']} / {row['prompt']}",
            rank=order(row, method, rank),  # as the column chose, so that runs are weighed alike
            **origin(run, row["_source"]),
        )
        if row["method"] != shows[(row["model"], method, condition)]:
            others.append(line)  # its quality stays out: it would stand beside the shown tag's diversity
            continue
        records.append(line)
        key = (row["model"], row["method"], row["prompt"])
        if key not in groups:
            groups.add(key)
            records += quality_lines(run, quality, key, line)
    # the others only where the shown tag has the same cell, to be named beside it: a metric only another tag has
    # would put a second setting in the shown tag's column
    shown = {(line.model, line.method, line.condition, line.measured_metric) for line in records}
    beside = [line for line in others if (line.model, line.method, line.condition, line.measured_metric) in shown]
    return records + beside, [line for line in others if line not in beside]


def mixed_notes(shown: list[Line]) -> list[str]:
    """A note per column whose per-prompt cells come from two runs or two tags (one run's hybrid_k1 on a prompt,
    another's hybrid_k1_bs5 on the next): it has no average (`averages`), and its cells are not one setting's."""
    sources: dict[tuple[str, str], dict[tuple[str, str], None]] = {}
    for line in shown:
        if line.metric.endswith("diversity") and not line.condition.startswith("Average"):
            sources.setdefault((line.method, line.measured_metric), {})[(_tag_of(line), line.run)] = None
    return [
        f"{md_literal(method)} / {md_literal(metric)}: its cells are of "
        f"{'; '.join(f'{md_literal(tag)} in {md_literal(run)}' for tag, run in found)}, so it has no average (a "
        "mean of two runs or settings is neither's); measure every prompt in one run with one tag to have one"
        for (method, metric), found in sources.items()
        if len(found) > 1
    ]


def left_out_notes(runs: list[RunData], paper: list[Line], cfg: Any, shown: list[Line]) -> list[str]:
    """A diversity cell measured by another tag of a column at a prompt where the column's own tag has none (no tag
    covers every prompt): its cell stays empty, and this note says what was measured there and why it is not shown
    (an empty cell otherwise reads as not measured)."""
    labels = table3_labels(paper, cfg)
    models = {line.model for line in shown}
    tags = {  # the tag each column shows (its cells' "model / tag / prompt"; not the Average rows')
        (line.model, line.method): line.measured_as.split(" / ")[1]
        for line in shown
        if not line.condition.startswith("Average") and line.measured_as.count(" / ") == 2
    }
    notes = _other_pairs(runs, cfg, labels, models) + mixed_notes(shown)
    for run in runs:
        for line in _split_records(run, cfg, labels)[1]:
            if line.model not in models:
                continue
            column = tags.get((line.model, line.method), "another tag")
            notes.append(
                f"{md_literal(line.method)} / {md_literal(line.condition)} / {md_literal(line.measured_metric)}: "
                f"measured {md_literal(line.measured)} in {md_literal(line.run)} ({md_literal(line.measured_as)}, "
                f"n={md_literal(line.n)}); not shown: the column shows {md_literal(column)}, which has no cell at this "
                "prompt, and a column holds one setting (measure the prompt with that tag to fill it)"
            )
    return notes


def _other_pairs(runs: list[RunData], cfg: Any, labels: dict[str, str], shown: set[str]) -> list[str]:
    """Table 3 shows one pair: a note per run whose Table 3 cells are of another pair (two pairs' runs in one
    report), which were left out without a word."""
    notes = []
    for run in runs:
        left = list(dict.fromkeys(line.model for line in table3_records(run, cfg, labels) if line.model not in shown))
        if left:
            notes.append(
                f"{md_literal(run.root)}: its Table 3 cells of {', '.join(md_literal(m) for m in left)} are not shown: "
                f"the table shows one pair ({', '.join(md_literal(m) for m in sorted(shown))}: the paper's if "
                "measured, else the one with the most methods, then the first listed in runs=); report that run "
                "on its own for its pair's table"
            )
    return notes


def _covers(tags: dict[str, set[str]], tag: str) -> bool:
    """Whether `tag` was measured on every prompt any tag of its column was."""
    return tags[tag] == set().union(*tags.values())


def finish_table3(records: list[Line], cfg: Any, labels: dict[str, str]) -> list[Line]:
    """One pair (the paper's, else a stand-in); the paper's prompts once any is measured (the car of E.1 is no
    Table 3 prompt), else all of the stand-in's; and the average rows."""
    model = choose_model(((line.model, line.method) for line in records), cfg.get("model"))
    records = [line for line in records if line.model == model]
    named = list(dict.fromkeys(labels.values()))
    if any(line.condition in named for line in records):
        records = [line for line in records if line.condition in named]
    shown, dropped = one_run_per_group(records)  # the averages are over the cells the table shows
    shown, repeats = first_of_each_cell(shown)
    return shown + averages(shown, named, model, dict(cfg.rows)) + dropped + repeats  # `assemble` notes the last two


def first_of_each_cell(records: list[Line]) -> tuple[list[Line], list[Line]]:
    """(first, repeats): one line per cell (method, prompt, metric), the first listed, as `assemble` shows it."""
    seen, first, repeats = set(), [], []
    for line in records:
        key = (line.method, line.condition, line.metric, line.measured_metric)
        (repeats if key in seen else first).append(line)
        seen.add(key)
    return first, repeats


def averages(
    records: list[Line], paper_prompts: list[str], model: str | None, rows: dict[str, str] | None = None
) -> list[Line]:
    """Per metric, the mean over the prompts measured for every method (a prompt only some methods have would
    tilt the comparison). It is the paper's "Average" row only over the paper's own prompt set; over any other
    set it is a row of its own, named with the prompts it covers. Its "measured as" names the tags averaged that
    are no row's own key (`rows`), as each prompt's cell does."""
    out = []
    for metric in dict.fromkeys(line.measured_metric for line in records):
        lines = [line for line in records if line.measured_metric == metric]
        methods = dict.fromkeys(line.method for line in lines)
        common = common_to_all({line.condition for line in lines if line.method == m} for m in methods)
        order = [p for p in paper_prompts if p in common] + sorted(common - set(paper_prompts))
        label = "Average" if set(common) == set(paper_prompts) else average_label(order)
        for method in methods:
            chosen = [line for line in lines if line.method == method and line.condition in common]
            if len(dict.fromkeys((line.run, _tag_of(line)) for line in chosen)) > 1:
                continue  # cells of two runs or settings: their mean would be of neither (`mixed_notes` says so)
            if chosen:
                low, high = pooled_line_interval(chosen)
                out.append(
                    replace(
                        chosen[0],
                        condition=label,
                        measured=mean_of([line.measured for line in chosen]),
                        n="/".join(sorted({line.n for line in chosen})),
                        ci_low=low,
                        ci_high=high,
                        measured_as=f"{model} / mean of {len(chosen)} prompt(s)" + settings_of(chosen, rows),
                        run=", ".join(dict.fromkeys(line.run for line in chosen)),
                    )
                )
    return out


def _tag_of(line: Line) -> str:
    """The method tag of a per-prompt cell ("toy / hybrid_k1 / a shape")."""
    return line.measured_as.split(" / ")[1] if line.measured_as.count(" / ") >= 2 else ""


def settings_of(lines: list[Line], rows: dict[str, str] | None) -> str:
    """What an average's "measured as" adds when its cells stand on tags other than their row's own key (a glob
    key's): " (Hybrid: hybrid_k1_bs5)", so it is never read as the paper's setting; "" otherwise."""
    tags = dict.fromkeys(line.measured_as.split(" / ")[1] for line in lines if line.measured_as.count(" / ") >= 2)
    other = [tag for tag in tags if tag not in (rows or {})]
    return f" ({lines[0].method}: {', '.join(other)})" if other else ""


def average_label(prompts: list[str]) -> str:
    return f"Average of {len(prompts)} prompt{'s' if len(prompts) != 1 else ''}: {', '.join(prompts)}"


def pooled_line_interval(lines: list[Line]) -> tuple[str, str]:
    """The interval of the mean of the lines' per-prompt estimates (`pooled_interval`, at their level); empty
    unless every estimate has an interval, all at one level."""
    if len({line.ci for line in lines}) > 1:
        return "", ""
    values, lows, highs = [], [], []
    for line in lines:
        value, low, high = as_number(line.measured), as_number(line.ci_low), as_number(line.ci_high)
        if value is None or low is None or high is None:
            return "", ""
        values.append(value)
        lows.append(low)
        highs.append(high)
    _, low, high = pooled_interval(values, lows, highs)
    return repr(low), repr(high)


def table3_labels(paper: list[Line], cfg: Any) -> dict[str, str]:
    conditions = [line.condition for line in paper if line.table == "3" and line.condition != "Average"]
    return read_prompt_labels(Path(cfg.prompts), list(dict.fromkeys(conditions)))


def build(runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table 3's measured cells of all runs, then one pair, its prompts and the Average row (`finish_table3`)."""
    labels = table3_labels(paper, cfg)
    return finish_table3([line for run in runs for line in table3_records(run, cfg, labels)], cfg, labels)
