"""Which networks a table's numbers were made with: two runs of one pair name (`toy`) may hold another student or
base (`model.distilled.network.path=...`), and a table whose rows come from both would set one pair's distilled
beside another's hybrid under the same name. Each run's invocation records (runs/*.json) name every network's
weights hash; a table drawing on runs whose hashes differ for the same pair and role says so."""

from __future__ import annotations

from .common import RunData, Table, md_literal


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
