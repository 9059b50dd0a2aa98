"""Which networks and pair settings a table's numbers were made with: two runs of one pair name (`toy`) may hold
another student or base (`model.distilled.network.path=...`), and a table whose rows come from both would set one
pair's distilled beside another's hybrid under the same name. Each run's invocation records (runs/*.json) name
every network's weights hash; a table drawing on runs whose hashes differ for the same pair and role says so. They
also keep the command line: images made with the pair's settings changed there (`model.base.guidance=5`) are
named, since a cell labelled `toy / base` reads as the pair as its config file has it."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from ...core.rundir import configs_per_group
from ...sampling.tags import run_tag
from .common import RunData, Table, md_code, md_literal, shows_group

# how an override changing the pair's settings begins: its keys (`model.base.guidance=5`, `+model.x=..`,
# `~model.x`) and the preset group that sets several of them (`preset=card`)
PAIR_OVERRIDES = ("model.", "+model.", "++model.", "~model.", "preset=")
DEFAULT_PRESET = "preset=paper"  # typed, it changes nothing (conf/generate.yaml's default)


def run_networks(run: RunData) -> dict[tuple[str, str], tuple[str, str]]:
    """(pair name, role) -> (weights hash, label) of the networks the run's newest image-making invocation loaded."""
    found: dict[tuple[str, str], tuple[str, str]] = {}
    for record in run.records:  # oldest first: the newest invocation's networks are the run's images' now
        models, config = record.get("models"), record.get("config") or {}
        pair = config.get("model") if isinstance(config.get("model"), dict) else {}
        if not isinstance(models, dict) or not pair.get("name"):
            continue
        for role, info in models.items():
            if isinstance(info, dict) and info.get("weights_hash"):
                label = (pair.get(role) or {}).get("label") if isinstance(pair.get(role), dict) else None
                found[(str(pair["name"]), role)] = (str(info["weights_hash"]), str(label or role))
    return found


def mixed_networks_notes(runs: list[RunData], table: Table) -> list[str]:
    """A note per pair and role whose weights differ between the runs the table's measured cells come from."""
    used = {line.run for line in table.measured}
    by_role: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    for run in runs:
        if str(run.root) not in used:
            continue
        for key, network in run_networks(run).items():
            by_role.setdefault(key, {})[str(run.root)] = network
    notes = []
    for (pair, role), networks in sorted(by_role.items()):
        if len({weights for weights, _ in networks.values()}) < 2:
            continue
        each = "; ".join(
            f"{md_literal(root)}: {md_literal(label)} {weights}" for root, (weights, label) in networks.items()
        )
        notes.append(
            f"**{md_literal(role)} networks differ under one pair name**: the runs behind this table made "
            f"{md_literal(pair)}'s images with different {md_literal(role)} weights ({each}), so its rows set one "
            "network's numbers beside another's; report each network's runs on their own, or name the pairs apart"
        )
    return notes


def changed_pair_settings(run: RunData) -> dict[tuple[str, str], list[str]]:
    """(pair name, method tag) -> the overrides of the pair's settings typed for the run's newest generate that made
    images of that tag (its record has `models`: an invocation that loaded the networks), [] where none."""

    def tag(config: dict) -> str:
        return run_tag(str(config["method"]), int(config.get("k") or 0), float(config.get("base_guidance") or 0),
                       config.get("base_steps"))  # fmt: skip

    return _typed_per_group(
        run, "generate", tag, loaded=True, keep=lambda item, config: not _other_role(item, str(config["method"]))
    )


def typed_per_settings(records: list[dict]) -> dict[str, list[str]]:
    """samples.csv's settings digest (its config part) -> the overrides of the pair's settings typed for the
    generate that made images at it (`image_settings` of its record), those bearing on its method: per image, where
    `changed_pair_settings` goes by the newest generate of a tag (one prompt remade at CFG 5 is not the others)."""
    found: dict[str, list[str]] = {}
    for record in records:  # a run's invocation records, oldest first
        config = record.get("config") or {}
        if record.get("command") != "generate" or not record.get("models") or not isinstance(config, dict):
            continue
        method = str(config.get("method"))
        typed = typed_pair_settings(record, lambda item, method=method: not _other_role(item, method))
        found.update(dict.fromkeys(record.get("image_settings") or {}, typed))
    return found


def typed_pair_settings(record: dict, keep: Callable[[str], bool] | None = None) -> list[str]:
    """The overrides of the pair's settings an invocation record's command line typed (not the default preset's),
    those `keep` takes."""
    typed = (str(item) for item in record.get("overrides") or [])
    return [
        item for item in typed
        if item.startswith(PAIR_OVERRIDES) and item != DEFAULT_PRESET and (keep is None or keep(item))
    ]  # fmt: skip


def _typed_per_group(
    run: RunData,
    command: str,
    group: Callable[[dict], str],
    loaded: bool = False,
    keep: Callable[[str, dict], bool] | None = None,
) -> dict[tuple[str, str], list[str]]:
    """(pair name, group(config)) -> the overrides of the pair's settings typed for the newest invocation of
    `command` of each group in the run's records (`loaded`: only those that loaded the networks); `keep(item,
    config)` drops the overrides that do not bear on the group."""
    found: dict[tuple[str, str], list[str]] = {}
    for record in run.records:  # oldest first: the newest invocation's settings are the images' now
        config = record.get("config") or {}
        pair = config.get("model") if isinstance(config.get("model"), dict) else {}
        if record.get("command") != command or (loaded and not record.get("models")) or not pair.get("name"):
            continue
        try:
            name = group(config)
        except (KeyError, TypeError, ValueError):  # a record of another version's shape: nothing to say
            continue
        found[(str(pair["name"]), name)] = typed_pair_settings(
            record, None if keep is None else lambda item, config=config: keep(item, config)
        )
    return found


def changed_pair_notes(runs: list[RunData], table: Table) -> list[str]:
    """A note per run, pair and method tag the table shows whose images were made with the pair's settings changed
    on the command line (Table 1: per run, pair and adapter, from transfer-lora's records)."""
    if table.id == "1":
        return _transfer_pair_notes(runs, table)
    notes = []
    for run in runs:
        for (pair, tag), typed in changed_pair_settings(run).items():
            if typed and shows_group(table, run, (pair, tag)):
                notes.append(
                    f"{md_literal(pair)} / {md_literal(tag)} in {md_literal(run.root)}: {_typed_text(pair, typed)}"
                )
    return notes


def _transfer_pair_notes(runs: list[RunData], table: Table) -> list[str]:
    """Table 1's: the pair's settings typed for the newest transfer-lora of each (pair, adapter) a row shows (both
    models of the pair run there, so every override counts)."""
    notes = []
    for run in runs:
        # per adapter file ("": adapters=, a table of them)
        found = _typed_per_group(
            run, "transfer-lora", lambda c: Path(str(c["adapter"])).name if c.get("adapter") else ""
        )
        for (pair, adapter), typed in found.items():
            shown = (
                shows_group(table, run, (pair, adapter))
                if adapter
                else any(
                    line.run == str(run.root) and line.measured_as.startswith(f"{pair} / ") for line in table.measured
                )
            )
            if typed and shown:
                what = f"{md_literal(pair)} / {md_literal(adapter)}" if adapter else f"{md_literal(pair)}'s adapters"
                notes.append(f"{what} in {md_literal(run.root)}: {_typed_text(pair, typed)}")
    return notes


# Keys that say only where a network, the shared components or a scheduler's config are read from (a local copy of
# the same repository): no sampler setting. The weights read are in the records, hashed.
LOCATION = re.compile(
    r"[+~]*model\.(components\.(path|repo)|(base|distilled)\.(network\.(path|repo|config_repo)|scheduler\.repo))="
)


def _typed_text(pair: str, typed: list[str]) -> str:
    """What a note says of the pair's keys typed for a group's images: the settings changed (its cells are not the
    pair as its file has it) and, apart, the places its networks were read from (a local copy may hold the same
    weights: the run records hash what was loaded)."""
    settings = [item for item in typed if not LOCATION.match(item)]
    places = [item for item in typed if LOCATION.match(item)]
    said = []
    if settings:
        said.append(
            f"its images were made with the pair's settings changed on the command line "
            f"({', '.join(md_code(item) for item in settings)}), so its cells are not {md_literal(pair)} as its "
            "config file has it"
        )
    if places:
        said.append(
            f"{'its' if not settings else 'and its'} networks were read from other places than its config file's "
            f"({', '.join(md_code(item) for item in places)}): the weights hashes in its runs/ records say which "
            "networks they are"
        )
    return "; ".join(said)


def mixed_config_notes(runs: list[RunData], table: Table) -> list[str]:
    """A note per run, pair and method tag whose per-prompt cells in `table` (Table 3's `toy / base / a shape`)
    stand on images of different configs (one prompt remade at another CFG of the base): each cell is of one
    setting, but a row compared across prompts, and its average, mix them."""
    notes = []
    for run in runs:
        shown = {  # (model, tag, prompt) of each per-prompt cell of the run
            tuple(line.measured_as.split(" / ", 2))
            for line in table.measured
            if line.run == str(run.root) and line.measured_as.count(" / ") >= 2
        }
        rows = [row for row in run.samples if (row["model"], row.get("tag") or row["method"], row["prompt"]) in shown]
        for (pair, tag), found in configs_per_group(rows).items():
            if len(found) > 1:
                notes.append(
                    f"{md_literal(pair)} / {md_literal(tag)} in {md_literal(run.root)}: its prompts' images were made "
                    f"with {len(found)} configs (samples.csv's settings {', '.join(md_code(c) for c in found)}), so "
                    "each prompt's cell is of one setting and an average over its prompts mixes them; make every "
                    "prompt at one setting to compare them"
                )
    return notes


def _other_role(override: str, method: str) -> bool:
    """Whether `override` sets a network the method does not run (`model.distilled.*` for base images, `model.base.*`
    for distilled and skip_first ones): it changed none of its images."""
    key = override.lstrip("+~").split("=", 1)[0]
    if method == "base":
        return key.startswith("model.distilled.")
    if method in ("distilled", "skip_first"):
        return key.startswith("model.base.")
    return False
