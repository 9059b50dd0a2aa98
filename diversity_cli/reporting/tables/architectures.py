"""Tables D.1 (other architectures) and E.1 (replacing the final timesteps instead of the first): diversity of
one prompt (with n and its interval), the group's quality beside it (CLIP score / toy adherence), and seconds per
image for each (pair, method tag), from diversity.csv / ablate.csv, fid.csv and samples.csv. What a run measured of
a pair they show that they leave out (tags no row takes, prompts other than the one shown) is said in their notes
(`left_out_notes`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...metrics.labels import metric_label
from .common import (
    Line,
    RunData,
    Table,
    as_number,
    choose_model,
    diversity_rows,
    match_tag,
    md_literal,
    mean_of,
    origin,
    preferred_tags,
    quality_lines,
    quality_of,
    tag_rank,
)


def seconds_per_group(run: RunData) -> dict[tuple[str, str, str], tuple[str, int]]:
    """(model, tag, prompt) -> (mean seconds per image, images), from samples.csv."""
    groups: dict[tuple[str, str, str], list[str]] = {}
    for row in run.samples:
        if row.get("seconds"):
            groups.setdefault((row["model"], row.get("tag") or row["method"], row["prompt"]), []).append(row["seconds"])
    return {key: (mean_of(values), len(values)) for key, values in groups.items()}


def _fullest_prompt(rows: list[dict[str, str]], model: str | None, preferred: str, own: str | None = None) -> str:
    """The stand-in's prompt for a one-prompt table: the paper's if measured, else the one with most methods; of
    those, the pair's own `default_prompt` (`own`) if it is one, else the first measured."""
    tags: dict[str, set[str]] = {}
    for row in rows:
        if row["model"] == model:
            tags.setdefault(row["prompt"].lower(), set()).add(row["method"])
    if preferred in tags or not tags:
        return preferred
    most = max(len(methods) for methods in tags.values())
    fullest = [prompt for prompt, methods in tags.items() if len(methods) == most]  # diversity.csv's, then ablate's
    return own if own in fullest else fullest[0]


def default_prompts(run: RunData) -> dict[str, str]:
    """pair -> its `default_prompt`, as the run's generate records give it (lowercase, as tables match prompts)."""
    found = {}
    for record in run.records:
        model = (record.get("config") or {}).get("model") or {}
        if record.get("command") == "generate" and model.get("name") and model.get("default_prompt"):
            found[str(model["name"])] = str(model["default_prompt"]).lower()
    return found


def table_tags(cfg: Any) -> dict[str, str]:
    """The method tags (globs allowed) some row of the table takes, of any pair: a pair not the paper's gets rows of
    its own for these, and a tag none of them takes is in no row (ablate's other settings belong to Figure 7)."""
    return {tag: tag for rows in dict(cfg.models).values() for tag in rows}


@dataclass
class Candidates:
    """A run's diversity rows the table could show (its metrics and tags, every prompt), the prompt each pair is
    shown on, and the pair standing in for the paper's (E.1), if any."""

    rows: list[dict[str, str]]
    prompt_of: dict[str, str]
    standin: str | None


def table_candidates(run: RunData, cfg: Any) -> Candidates:
    """The rows of `run` the table could show, and the one prompt each pair is shown on."""
    pairs = {str(model): dict(rows) for model, rows in dict(cfg.models).items()}
    metrics = {str(m) for m in cfg.metrics}
    paper_prompt = str(cfg.prompt).lower()
    tags = table_tags(cfg)
    div = [r for r in diversity_rows(run) if r["metric"] in metrics and match_tag(r["method"], tags)]
    # A run on none of the paper's pairs stands in for the one named by `standin` (E.1: SDXL-DMD2). Each pair
    # counts on one prompt, the table's: the paper's if measured, else the one with the most methods measured.
    paper_models = [r["model"] for r in div if r["model"] in pairs]
    standin = None
    if not paper_models and cfg.get("standin"):
        rows = pairs[str(cfg.standin)]
        standin = choose_model(((r["model"], r["method"]) for r in div if match_tag(r["method"], rows)), None)
    own = default_prompts(run)
    prompt_of = {
        model: paper_prompt if model in pairs else _fullest_prompt(div, model, paper_prompt, own.get(model))
        for model in {r["model"] for r in div}
    }
    if standin is not None and cfg.get("standin_prompt"):
        prompt_of[standin] = str(cfg.standin_prompt).lower()
    return Candidates(div, prompt_of, standin)


def architecture_records(table: str, run: RunData, cfg: Any) -> list[Line]:
    """diversity.csv + samples.csv seconds -> Table D.1 / E.1 cells, one row per (pair, method tag)."""
    pairs = {str(model): dict(rows) for model, rows in dict(cfg.models).items()}
    found = table_candidates(run, cfg)
    div, prompt_of, standin = found.rows, found.prompt_of, found.standin
    div = [r for r in div if r["prompt"].lower() == prompt_of[r["model"]]]
    if cfg.get("standin"):  # a table about one pair (E.1): the other architectures of a shared run are D.1's
        div = [r for r in div if r["model"] in pairs or r["model"] == standin]

    def rows_of(model: str) -> dict[str, str]:
        return pairs.get(model) or (pairs[str(cfg.standin)] if model == standin else {})

    # a paper row several of a pair's tags could fill (hybrid_k1 and a glob's hybrid_k1_bs5) shows one; the others
    # get rows of their own, as tags no row names do
    candidates = [(r["model"], r["method"], rows_of(r["model"])) for r in div]
    shows = preferred_tags(
        ((model, match_tag(tag, rows)), tag, tag_rank(tag, rows) or 0)
        for model, tag, rows in candidates
        if match_tag(tag, rows)
    )

    def label(model: str, tag: str, prompt: str) -> tuple[str, str]:
        method = match_tag(tag, rows_of(model))
        if method and shows.get((model, method)) == tag:
            return method, str(cfg.prompt)
        return f"{model} / {tag}", prompt

    seconds = seconds_per_group(run)
    quality = quality_of(run)
    records = []
    seen = set()
    for row in div:
        method, condition = label(row["model"], row["method"], row["prompt"])
        rank = (tag_rank(row["method"], rows_of(row["model"])) or 0) if condition == str(cfg.prompt) else 0
        measured_as = f"{row['model']} / {row['method']} / {row['prompt']}"
        base = dict(model=row["model"], measured_as=measured_as, rank=rank)
        line = Line(
            table,
            method,
            condition,
            "dreamsim_diversity",
            measured_metric=metric_label(row),
            measured=row["value"],
            n=row.get("n", ""),
            ci_low=row.get("ci_low") or "",
            ci_high=row.get("ci_high") or "",
            ci=row.get("ci") or "",
            **base,
            **origin(run, row["_source"]),
        )
        records.append(line)
        key = (row["model"], row["method"], row["prompt"])
        if key in seen:
            continue
        seen.add(key)
        records += quality_lines(run, quality, key, line)  # beside diversity: is the variety on the prompt?
        if key in seconds and seconds[key][0]:
            value, count = seconds[key]
            source = "samples.csv"
        elif as_number(row.get("seconds_per_image")) is not None:
            value, count, source = row["seconds_per_image"], row.get("n", ""), row["_source"]
        else:
            continue
        records.append(
            Line(
                table,
                method,
                condition,
                "seconds_per_image",
                measured_metric="seconds_per_image",
                measured=value,
                n=str(count),
                **base,
                **origin(run, source),
            )
        )
    return records


# ------------------------------------------------------------------------------------ what a table leaves out
# D.1 and E.1 show one prompt per pair and only the tags their rows take: what else a run measured of a pair they
# show is said beside them, so a missing row or prompt is not read as unmeasured.


def left_out_notes(runs: list[RunData], cfg: Any, table: Table) -> list[str]:
    """One note per pair `table` shows (or paper's pair it has no prompt of) that the runs measured in more than
    the table shows: its tags no row takes, and its prompts other than the one shown."""
    found = {str(run.root): table_candidates(run, cfg) for run in runs}
    pairs = {str(model) for model in dict(cfg.models)}
    models = [line.model for line in table.measured if line.model]
    models += [row["model"] for each in found.values() for row in each.rows if row["model"] in pairs]
    notes = []
    for model in dict.fromkeys(models):
        tags, tag_runs = rowless_tags(runs, cfg, model)
        prompts, prompt_runs = other_prompts(found, table, model)
        said = [_tags_text(tags, cfg, table)] if tags else []
        said += [_prompts_text(prompts, cfg, table, model)] if prompts else []
        if said:
            where = _listed([md_literal(root) for root in dict.fromkeys(tag_runs + prompt_runs)])
            notes.append(f"{md_literal(model)}: measured in {where}, not shown: {'; '.join(said)}")
    return notes


def rowless_tags(runs: list[RunData], cfg: Any, model: str) -> tuple[list[str], list[str]]:
    """(tags, runs): the method tags of `model` diversity.csv measured in the table's metrics that no row of the
    table takes, and the runs that measured them. ablate.csv's are not named: its other settings are Figure 7's."""
    tags, metrics = table_tags(cfg), {str(m) for m in cfg.metrics}
    found: dict[str, None] = {}
    where: dict[str, None] = {}
    for run in runs:
        for row in run.diversity:
            tag = row.get("method", "")
            if row.get("model") == model and row.get("metric") in metrics and tag and not match_tag(tag, tags):
                found[tag] = None
                where[str(run.root)] = None
    return list(found), list(where)


def other_prompts(found: dict[str, Candidates], table: Table, model: str) -> tuple[list[str], list[str]]:
    """(prompts, runs): the prompts `model` was measured on, in rows the table could show, other than those its
    cells show, and the runs (`found`: each run's candidates) that measured them."""
    seen = {prompt.lower() for prompt in shown_prompts(table, model)}
    prompts: dict[str, str] = {}
    where: dict[str, None] = {}
    for root, each in found.items():
        for row in each.rows:
            if row["model"] == model and row["prompt"].lower() not in seen:
                prompts.setdefault(row["prompt"].lower(), row["prompt"])
                where[root] = None
    return list(prompts.values()), list(where)


def shown_prompts(table: Table, model: str) -> list[str]:
    """The prompts the cells of `model` stand on, from their "measured as" (model / tag / prompt)."""
    lines = [line for line in table.measured if line.model == model and line.measured_as.count(" / ") >= 2]
    return list(dict.fromkeys(line.measured_as.split(" / ", 2)[2] for line in lines))


def _tags_text(tags: list[str], cfg: Any, table: Table) -> str:
    listed = _listed([md_literal(tag) for tag in tags])
    takes = ", ".join(md_literal(tag) for tag in table_tags(cfg))
    it = "it" if len(tags) == 1 else "them"
    return f"{listed} (no row of Table {table.id} takes {it}: its rows take {takes})"


def _prompts_text(prompts: list[str], cfg: Any, table: Table, model: str) -> str:
    shown = shown_prompts(table, model)
    which = (
        f"here {_listed([_quoted(prompt) for prompt in shown])}: {_prompt_rule(cfg, model)}"
        if shown
        else f"the paper's {_quoted(cfg.prompt)}, not measured for this pair"
    )
    word = "prompt" if len(prompts) == 1 else "prompts"
    listed = _listed([_quoted(prompt) for prompt in prompts])
    return f"{word} {listed} (the table shows one prompt per pair, {which}; see Table 3 or diversity.csv)"


def _prompt_rule(cfg: Any, model: str) -> str:
    """Why the table shows the prompt it does for `model` (`table_candidates`)."""
    if model in {str(pair) for pair in dict(cfg.models)}:
        return "the paper's"
    if cfg.get("standin") and cfg.get("standin_prompt"):
        return "the mapping's standin_prompt"
    return "the paper's if measured, else the one with the most methods"


def _quoted(prompt: object) -> str:
    return f'"{md_literal(prompt)}"'


def _listed(items: list[str], most: int = 3) -> str:
    """At most `most` items, then how many more: a note stays one line however much a run measured."""
    more = f" and {len(items) - most} more" if len(items) > most else ""
    return ", ".join(items[:most]) + more


def build(table: str, runs: list[RunData], paper: list[Line], cfg: Any) -> list[Line]:
    """Table D.1's or E.1's (`table`: "D.1" / "E.1") measured cells, run by run; the paper's cells are not needed."""
    return [line for run in runs for line in architecture_records(table, run, cfg)]
