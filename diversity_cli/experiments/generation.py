"""Generation into a run directory: prompts x seeds of one sampling setting, resumable, one row per image."""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf
from rich.markup import escape

from ..core.config import value_differences
from ..core.console import progress_bar, stderr_console
from ..core.errors import UserError
from ..core.fingerprint import digest
from ..core.pair_settings import image_settings
from ..core.prompts import PromptRow, command_limits, prompt_id, read_prompts
from ..core.record import current, read_records, record_invocation
from ..core.rundir import RunDir, config_part, shard_writer, weights_of
from ..core.schema import check
from ..core.schemas.generate import GenerateConfig
from ..models.hub import method_roles, network_roles
from ..models.provenance import hashed_provenance, pair_provenance, role_hashes
from ..sampling.methods import USES_BASE_KNOBS
from ..sampling.tags import run_tag
from .shards import Shard, batch_done, parse_shard


@dataclass(frozen=True)
class Generated:
    """What `generate` did: the run directory (a path wherever one is taken) and how many images this process
    made. A command that waited for another writer of the same run finds its images made by that one: the summary
    must not count them as its own."""

    root: Path
    made: int

    def __fspath__(self) -> str:
        return str(self.root)


@dataclass(frozen=True)
class Job:
    prompt: str
    seed: int
    path: str  # relative to the run directory
    case: int = 0  # index of its prompt row: the unit a shard owns (all seeds of a prompt in one shard)


# Keys of a pair's config that say how it is measured, not how it samples.
MEASUREMENT_KEYS = ("default_metric", "default_reference", "default_quality", "auto_k")


def cfg_tag(cfg: DictConfig) -> str:
    return run_tag(cfg.method, cfg.k, cfg.base_guidance, cfg.base_steps)


def settings_hash(cfg: DictConfig, done: dict[str, dict[str, str]] | None = None) -> str:
    """Fingerprint of everything that determines an image for a given prompt and seed (`settings_keys`). `done`,
    the run's samples rows: a run whose images were digested before a role's guidance was read as a number
    (`model.base.guidance=3` apart from 3.0) goes on under their digest."""
    return continued_digest(settings_keys(cfg), settings_keys(cfg, as_typed=True), done)


def continued_digest(now: dict[str, Any], before: dict[str, Any], done: dict[str, dict[str, str]] | None) -> str:
    """The digest of the settings `now`, unless images of the run (`done`, its samples rows) carry the digest the
    same settings had `before` (digested another way): the run goes on under theirs, no image remade."""
    digest_now, digest_before = _digest(now), _digest(before)
    if digest_before != digest_now and any(
        config_part(row.get("settings") or "") == digest_before for row in (done or {}).values()
    ):
        return digest_before
    return digest_now


def _digest(keys: dict[str, Any]) -> str:
    return hashlib.sha1(json.dumps(keys, sort_keys=True).encode()).hexdigest()[:12]


def pair_image_keys(model: DictConfig, as_typed: bool = False) -> dict[str, Any]:
    """The pair's settings as its images are keyed by them (`settings_keys`' model part)."""
    # Unresolved: `${asset:...}` paths stay symbolic, so a moved checkout still recognises its own images.
    keys = OmegaConf.to_container(model, resolve=False)
    # what a pair is measured with by default changes no image, nor do its k=auto settings (the k they give does)
    keys = image_settings({key: value for key, value in keys.items() if key not in MEASUREMENT_KEYS})
    if as_typed:
        return keys
    return {**keys, **{role: _float_guidance(keys[role]) for role in ("base", "distilled") if role in keys}}


def settings_keys(cfg: DictConfig, as_typed: bool = False) -> dict[str, Any]:
    """The settings `settings_hash` digests: the pair's (the whole pair, whatever the method runs of it: the digest
    of every image made so far covers it) and the method's knobs. A role's guidance is a float, as the knob
    base_guidance is: `model.base.guidance=3` is the pair's 3.0 (`as_typed`: as given, the digest of before)."""
    keys = {"model": pair_image_keys(cfg.model, as_typed), "method": cfg.method}
    if cfg.method in USES_BASE_KNOBS:
        keys.update(k=cfg.k, base_guidance=float(cfg.base_guidance), base_steps=cfg.base_steps)
    return keys


def _float_guidance(role: Any) -> Any:
    guidance = role.get("guidance") if isinstance(role, dict) else None
    if isinstance(guidance, int) and not isinstance(guidance, bool):
        return {**role, "guidance": float(guidance)}
    return role


def validate(cfg: DictConfig) -> None:
    """Reject bad knobs before any model is loaded: every key against the generate schema (types, ranges, k within
    the pair's distilled schedule). compose() has checked a CLI config already; library callers (ablate's points)
    get the same checks here."""
    check(GenerateConfig, cfg)


def plan_jobs(cfg: DictConfig, rows: list[PromptRow], shard: Shard | None = None) -> list[Job]:
    """Every (prompt, seed) image of the command, in order, without duplicates; with a shard, only the images of
    its block of prompt rows (`Shard.block`)."""
    folder = f"{cfg.model.name}/{cfg_tag(cfg)}"
    jobs: dict[str, Job] = {}
    for case, row in enumerate(rows):
        first = row.first_seed(cfg.seed)
        for j in range(int(cfg.n)):
            seed = first + j
            path = f"{folder}/{prompt_id(row.prompt)}/{seed:06d}.png"
            jobs.setdefault(path, Job(row.prompt, seed, path, case))
    if shard is None:
        return list(jobs.values())
    block = shard.block(len(rows))
    return [job for job in jobs.values() if job.case in block]


def remaining(cfg: DictConfig, shard: Shard) -> int | None:
    """How many images shard `shard` still has to make (None: unknown before a model loads, as with k=auto).
    Read-only: a launcher asks this to submit only the shards with work left."""
    validate(cfg)
    if cfg.k == "auto" and cfg.method in USES_BASE_KNOBS:
        return None
    jobs = plan_jobs(cfg, _prompt_rows(cfg), shard)
    if cfg.overwrite:  # every image is made again, as one process would (none was counted before: nothing ran)
        return len(jobs)
    run = RunDir(cfg.out)
    done = {row["path"]: row for row in run.read_samples()}
    refuse_clashes(run, jobs, done, settings_hash(cfg, done), keys=settings_keys(cfg))  # one line, not one a shard
    return sum(1 for job in jobs if job.path not in done or not (Path(cfg.out) / job.path).exists())


def merge_samples(cfg: DictConfig, shards: int) -> Path:
    """After every shard has finished: the shard files folded into samples.csv (the unsharded table)."""
    path = RunDir(cfg.out).merge_shards()
    record_invocation(cfg.out, config=cfg, merged_shards=shards)  # samples.csv is this command's doing now
    stderr_console().print(f"merged {shards} shard(s) into {path}")
    return Path(cfg.out)


def _prompt_rows(cfg: DictConfig) -> list[PromptRow]:
    prompt = cfg.prompt if cfg.prompt is not None or cfg.prompts is not None else cfg.model.get("default_prompt")
    return read_prompts(prompt, cfg.prompts, cfg.limit, **command_limits(cfg))


def pending(
    run: RunDir,
    jobs: list[Job],
    settings: str,
    overwrite: bool,
    advice: str = "",
    keys: dict | None = None,
    done: dict[str, dict[str, str]] | None = None,
) -> list[Job]:
    """Jobs still to do. A finished image made by other settings is an error (`advice`: what else to do, said before
    another out= or overwrite=true; `keys`, the settings digested, to name what differs) unless `overwrite`; with
    it, every job is to do, and the images it remakes stay until `clear_remade` (once the models have loaded: a
    setting refused at load time must not have cost the user their images). `done`: the run's samples rows by path,
    where the caller has read them already."""
    if done is None:
        done = {row["path"]: row for row in run.read_samples()}
    wanted = {job.path for job in jobs}
    if overwrite:
        run.check_targets(wanted)
        return jobs
    refuse_clashes(run, jobs, done, settings, advice, keys)
    lost = {p for p in wanted if p in done and not run.image_ok(p)}
    if lost:  # rows whose image is gone, truncated or unreadable: made again, so their old rows go
        run.drop_samples(lost)
    todo = [job for job in jobs if job.path not in done or job.path in lost]
    run.check_targets(job.path for job in todo)  # a file there that no row names is not ours: never replaced
    return todo


def clear_remade(run: RunDir, todo: list[Job], settings: str | None = None) -> None:
    """Under overwrite=true, after the models have loaded: the rows and images about to be made again go, so the
    new rows never sit beside old ones of the same path (a kill from here on leaves rows whose image is missing,
    which the next run makes again)."""
    listed = {row["path"]: row for row in run.read_samples()}
    remade = {job.path for job in todo if job.path in listed}
    if remade:  # said: overwrite=true replaces images the run holds, perhaps of other settings
        other = 0 if settings is None else sum(config_part(listed[p].get("settings", "")) != settings for p in remade)
        stderr_console().print(
            f"overwrite=true: {len(remade)} image(s) in {run.root} are made again"
            + (f", {other} of them made with other settings before" if other else "")
        )
    run.drop_samples(remade)


def refuse_clashes(
    run: RunDir,
    jobs: list[Job],
    done: dict[str, dict[str, str]],
    settings: str,
    advice: str = "",
    keys: dict | None = None,
) -> None:
    """A finished image that other settings made is never replaced without overwrite=true. With `keys` (the
    settings digested), the refusal names what differs where the run's records hold the earlier digest's keys."""
    clashes = sorted(
        job.path for job in jobs if job.path in done and config_part(done[job.path]["settings"]) != settings
    )
    if clashes:
        then = recorded_settings(run.root, config_part(done[clashes[0]]["settings"])) if keys else None
        raise UserError(
            f"{run.root} already holds {len(clashes)} image(s) made with different settings (e.g. {clashes[0]}"
            f"{_what_changed(then, keys) if then is not None and keys else ''}); {advice}use another out= or add "
            "overwrite=true"
        )


def _what_changed(then: dict, now: dict) -> str:
    """`; <key>=<then> then, <now> now; ...`, and where only the student changed for base images, why that counts:
    every image is keyed by the whole pair's settings."""
    changed = value_differences(then, now)
    whole = now.get("method") == "base" and all(d.startswith("model.distilled.") for d in changed)
    return f"; {'; '.join(changed[:4])}" + (": base images too are keyed by every setting of the pair" if whole else "")


def recorded_settings(root: Path, digest: str) -> dict | None:
    """The settings (`settings_keys`) behind an image settings digest, as the run's generate records hold them
    (`image_settings`; records written before they held it: None)."""
    for record in reversed(read_records(root)):
        found = (record.get("image_settings") or {}).get(digest)
        if isinstance(found, dict):
            return found
    return None


def repeated_images_note(rows: list[PromptRow], n: int, seed: int) -> str | None:
    """Said where prompt rows ask for an image another row asks for too (the same prompt at the same seed: a line
    listed twice, a table's rows whose seed windows overlap): it is one file, made once, so the run holds fewer
    images than rows x n."""
    asked = Counter((row.prompt, row.first_seed(seed) + j) for row in rows for j in range(n))
    repeats = sum(asked.values()) - len(asked)
    if not repeats:
        return None
    example = next(prompt for (prompt, _), count in asked.items() if count > 1)
    return (
        f"{repeats} of the {sum(asked.values())} images the prompt rows ask for repeat another row's (the same "
        f"prompt and seed, e.g. {example!r}): each is made once"
    )


def auto_k_line(cfg: DictConfig, record: dict) -> str:
    """What k=auto chose and why: the base's commitment, how it was measured (or that a cache had it), and where the
    rule's count of the student's steps above it was kept within 1..n-1."""
    above = record.get("distilled_steps_above", cfg.k)
    kept = (
        f"; {above} of the student's steps lie above it, kept within 1..n-1 (each model runs at least one step)"
        if above != cfg.k
        else ""
    )
    cached = f", from the cache {record['cache']}" if record.get("from_cache") else ""
    return (
        f"k=auto -> k={cfg.k}: the base commits at timestep {record['committed_timestep']} "
        f"({record['committed_fraction']:.0%} of its steps, {record['metric']}, threshold {record['threshold']:g}, "
        f"{len(cfg.auto_k.prompts)} prompt(s) x {cfg.auto_k.n} seeds{cached}){kept}"
    )


def generate(cfg: DictConfig) -> Generated:
    validate(cfg)
    shard = parse_shard(cfg.get("shard"))
    rows = _prompt_rows(cfg)
    note = repeated_images_note(rows, int(cfg.n), int(cfg.seed))
    if note and (shard is None or shard.index == 0):  # once, not in every shard's log
        stderr_console().print(f"[yellow]note[/]: {note}")
    pair, auto_k = None, None
    if cfg.k == "auto" and cfg.method in USES_BASE_KNOBS:
        pair = load_generation_pair(cfg)
        cfg.k, record = automatic_k(pair, cfg)
        stderr_console().print(auto_k_line(cfg, record))
        auto_k = {"settings": OmegaConf.to_container(cfg.auto_k, resolve=True), "k": cfg.k, "commitment": record}
    writer = shard_writer(shard)
    run = RunDir(cfg.out, writer, lock_wait=cfg.get("lock_wait"))
    jobs = plan_jobs(cfg, rows, shard)
    with run.writing():  # one process per samples file: a second one waits (lock_wait) or refuses
        # under overwrite=true every image of the command is remade, the other shards' too: none of them is "kept"
        remade = {job.path for job in plan_jobs(cfg, rows)} if cfg.overwrite else set()
        made = _fill(cfg, run, jobs, pair, auto_k, remade)
    one_step = cfg.method == "hybrid" and cfg.k == 1 and cfg.get("base_steps") is None
    note = str(cfg.model.get("hybrid_note") or "") if one_step else ""
    said = current().said
    if note and note not in said and (shard is None or shard.index == 0):
        # the pair's word on its one-step hand-over: after the work (a refusal at load stays one line), once a
        # command (not once per ablate point)
        said.add(note)
        stderr_console().print(f"[yellow]note[/]: {escape(note)}")
    return made


def _fill(
    cfg: DictConfig, run: RunDir, jobs: list[Job], pair, auto_k: dict | None = None, remade: set[str] | None = None
) -> Generated:
    """Make the images of `jobs` still missing from the run directory, holding its writer's lock; `remade`: the
    images the whole command makes again (overwrite=true), which no weights check counts as kept."""
    done = {row["path"]: row for row in run.read_samples()}
    settings = settings_hash(cfg, done)
    todo = pending(run, jobs, settings, bool(cfg.overwrite), keys=settings_keys(cfg), done=done)
    if not todo:
        refuse_kept_of_other_weights(cfg, run, remade or set(), settings)
        shard = parse_shard(cfg.get("shard"))
        if shard is not None and not jobs:  # more shards than prompt rows: this block of them is empty
            stderr_console().print(f"[green]nothing to do[/]: shard {shard} holds no prompt row (fewer than shards)")
        else:
            stderr_console().print(f"[green]nothing to do[/]: all {len(jobs)} images are in {run.root}")
        if auto_k:  # k=auto measured a commitment (or read it from its cache): what it found is this run's to record
            record_invocation(run.root, config=cfg, auto_k=auto_k)
        return Generated(run.root, 0)

    from ..sampling.plan import make_plan
    from ..sampling.record import sampling_settings
    from ..sampling.sampler import NetworkTimer

    pair = (pair or load_generation_pair(cfg)).for_method(cfg.method)  # base-only rows run at the base's own resolution
    device = pair.device
    name = f"{cfg.model.name}_{cfg_tag(cfg)}"
    knobs = dict(k=cfg.k, base_guidance=cfg.base_guidance, base_steps=cfg.base_steps)
    plan = make_plan(pair, cfg.method, **knobs)  # sample_latents steps its own copies of the schedulers
    run.root.mkdir(parents=True, exist_ok=True)
    run.save_config(name, cfg)
    run.save_versions(name, {"device": str(device)})
    roles = provenance_roles(cfg.model, str(cfg.method))
    models = pair_provenance(cfg.model, pair, roles)  # hub id, revision and weights hash of each network used
    made_with = f"{settings}/{weights_part(cfg.model, str(cfg.method), models)}"
    refuse_other_weights(
        run, str(cfg.model.name), cfg_tag(cfg), {job.path for job in todo} | (remade or set()), made_with
    )
    if cfg.overwrite:
        clear_remade(run, todo, settings)
    record_invocation(
        run.root,
        config=cfg,
        device=str(device),
        dtype=str(pair.dtype),
        models=models,
        sampling=sampling_settings(pair, plan),
        image_settings={settings: settings_keys(cfg)},  # what the digest in samples.csv stands for, to name changes
        **({"auto_k": auto_k} if auto_k else {}),  # the settings k=auto measured with, and what it found
    )
    run.save_timesteps(name, plan.visits(), [type(s.scheduler).__name__ for s in plan.segments for _ in s.timesteps])

    knob_cells = dict.fromkeys(("k", "base_guidance", "base_steps"), "")  # blank where the method has no base inside
    if cfg.method in USES_BASE_KNOBS:
        steps = "" if cfg.base_steps is None else cfg.base_steps
        # a float as the tag and the settings hash read it: base_guidance=3 and =3.0 are one setting, one spelling
        knob_cells.update(k=cfg.k, base_guidance=float(cfg.base_guidance), base_steps=steps)
    warm_up(pair, plan, todo[0])
    with progress_bar() as progress:
        task = progress.add_task(f"{name} ({len(jobs) - len(todo)} done)", total=len(todo))
        for start in range(0, len(todo), int(cfg.batch_size)):
            batch = todo[start : start + int(cfg.batch_size)]
            timer = NetworkTimer(device)
            images, seconds = sample_batch(
                pair, plan, [job.prompt for job in batch], [job.seed for job in batch], timer
            )
            rows_out = []
            for job in batch:
                rows_out.append(
                    {
                        "method": cfg.method,
                        "model": cfg.model.name,
                        "prompt": job.prompt,
                        "seed": job.seed,
                        "steps": plan.steps,
                        "nfe": plan.nfe,
                        "seconds": f"{seconds:.4f}",
                        "path": job.path,
                        **knob_cells,
                        "tag": cfg_tag(cfg),
                        "settings": made_with,
                        "case": job.case,
                        "network_seconds": f"{timer.seconds / len(batch):.4f}",
                    }
                )
            run.write_images([(job.path, image) for job, image in zip(batch, images, strict=True)], rows_out)
            progress.advance(task, len(batch))
            batch_done()  # a shard job told to stop (SIGUSR2) checkpoints and requeues here, between batches
    return Generated(run.root, len(todo))


def weights_part(model: DictConfig, method: str, models: dict) -> str:
    """The weights behind an image, for samples.csv's `settings` (`<config>/<weights>`): a digest of the weights
    hashes of the networks `method` runs (the student's are no part of a base image, nor the base's of a
    distilled one unless the student is a LoRA on it; the components are part of both)."""
    used = provenance_roles(model, method)
    return digest(role_hashes(models, [role for role in models if role in used]))[:12]


def refuse_kept_of_other_weights(cfg: DictConfig, run: RunDir, remade: set[str], settings: str) -> None:
    """With every image there and no model loaded: the weights the pair names now, hashed from its files (memoised),
    against those the kept images were made by; a student retrained in place made them "done" under its label.
    Tiny pairs (networks built in memory) and weights not on this machine cannot be told apart here: not checked."""
    models = hashed_provenance(cfg.model, roles=provenance_roles(cfg.model, str(cfg.method)))
    if models is None:
        return
    made_with = f"{settings}/{weights_part(cfg.model, str(cfg.method), models)}"
    refuse_other_weights(run, str(cfg.model.name), cfg_tag(cfg), remade, made_with)


def refuse_other_weights(run: RunDir, model: str, tag: str, remade: set[str], made_with: str) -> None:
    """Images of this model and tag the run keeps (not among the paths the command makes again, `remade`) that
    other weights made (a student retrained in place, new toy weights installed): the new ones would join them
    under one label."""
    other = [
        row
        for row in run.read_samples()
        if row["model"] == model
        and (row.get("tag") or row["method"]) == tag
        and row["path"] not in remade
        and weights_of(row.get("settings", "")) not in ("", weights_of(made_with))
    ]
    if other:
        raise UserError(
            f"{run.root} holds {len(other)} {tag} image(s) of {model} that other weights made (settings "
            f"{other[0]['settings']}, now {made_with}): one label over both would mix two models; use another out=, "
            "or remake them all (overwrite=true with the same n and prompts)"
        )


_WARMED: set[tuple[str, str]] = set()  # (pair, device) a process has sampled with


def warm_up(pair, plan, job: Job) -> None:
    """One untimed image before the timed ones, once a process for a pair and device: a process's first network
    calls pay for kernel selection and allocation, which no image's `seconds` should carry (in a review run ablate's
    first point read 2.4x the others' s/image at the same NFE, whichever k came first). The image is thrown away:
    an image depends on its seed alone, so the timed one is the same."""
    key = (str(pair.name), str(pair.device))
    if key not in _WARMED:
        sample_batch(pair, plan, [job.prompt], [job.seed])
        _WARMED.add(key)


def sample_batch(pair, plan, prompts: list[str], seeds: list[int], timer=None) -> tuple[list, float]:
    """PIL images for one batch (one seed per prompt) and the seconds per image: text encoding, both models
    and decoding included. A `NetworkTimer` given as `timer` also sums the denoising-network calls alone."""
    import torch

    from ..sampling.sampler import sample_latents

    began = time.perf_counter()
    conditioning = pair.encode(prompts)
    latents = sample_latents(plan, conditioning, seeds, pair.latent_shape, pair.device, timer=timer)
    images = pair.decode(latents)
    if pair.device.type == "cuda":
        torch.cuda.synchronize()
    return images, (time.perf_counter() - began) / len(prompts)


def automatic_k(pair, cfg: DictConfig) -> tuple[int, dict]:
    """k=auto for `pair`: (k, the base-commitment record it came from), measured once and cached."""
    from ..core.fingerprint import weights_fingerprint
    from ..sampling.autok import resolve_k

    embedder = _commitment_judge(pair, cfg)  # loaded before the cache: its weights are part of the key
    return resolve_k(pair, cfg, lambda: _measure_commitment(pair, cfg, embedder), weights_fingerprint(embedder.weights))


def _commitment_judge(pair, cfg: DictConfig):
    from ..metrics.embedders import get_embedder

    return get_embedder(cfg.auto_k.metric, pair.device)


def _measure_commitment(pair, cfg: DictConfig, embedder) -> dict:
    from ..metrics.embedders import pairwise_distances
    from ..sampling.autok import measure_base_commitment

    return measure_base_commitment(pair, cfg.auto_k, embedder, partial(pairwise_distances, kind=embedder.distance))


def load_generation_pair(cfg: DictConfig):
    """The pair as `cfg.method` runs it (`method_roles`): method=base reads no student, method=distilled and
    skip_first no base, so Table 2's rows need neither the other's download nor its memory."""
    from ..models.loading import load_pair, resolve_device, resolve_dtype

    device = resolve_device(cfg.device)
    roles = method_roles(cfg.model, str(cfg.method))
    return load_pair(cfg.model, device, resolve_dtype(cfg.model.dtype, device), roles)


def provenance_roles(model: DictConfig, method: str) -> tuple[str, ...]:
    """The networks whose weights a method's images are made of, as records name them: those it loads."""
    return (*network_roles(model, method_roles(model, method)), "components")
