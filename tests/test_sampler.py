"""The sampler on tiny pairs: method identities, schedules visited, per-sample seeding."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from diversity_cli.core.errors import UserError
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents

FAMILIES = ["tiny_sd", "tiny_sdxl", "tiny_pixart"]
SEEDS = [3, 7]


def _latents(pair, method, **knobs):
    plan = make_plan(pair, method, **knobs)
    return sample_latents(plan, pair.encode(["a red circle"] * len(SEEDS)), SEEDS, pair.latent_shape)


@pytest.mark.parametrize("name", FAMILIES)
def test_hybrid_k0_is_the_distilled_model(tiny_pairs, name):
    pair = tiny_pairs(name)
    assert torch.equal(_latents(pair, "hybrid", k=0), _latents(pair, "distilled"))


@pytest.mark.parametrize("name", FAMILIES)
def test_hybrid_all_steps_is_the_base_model_on_the_distilled_schedule(tiny_pairs, name):
    pair = tiny_pairs(name)
    n = len(make_plan(pair, "distilled").segments[0].timesteps)
    # The base network, at guidance 2, as if it were the distilled model of the pair.
    as_distilled = dataclasses.replace(pair.distilled, network=pair.base.network, guidance=2.0)
    base_on_schedule = dataclasses.replace(pair, distilled=as_distilled)
    expected = _latents(base_on_schedule, "distilled")
    assert torch.equal(_latents(pair, "hybrid", k=n, base_guidance=2.0), expected)
    assert not torch.equal(expected, _latents(pair, "distilled"))


def test_methods_visit_the_expected_timesteps(tiny_pairs):
    pair = tiny_pairs("tiny_sdxl")  # distilled: LCM at 999, 749, 499, 249; base: Euler trailing, 8 steps
    visits = {m: make_plan(pair, m, k=1).visits() for m in ("distilled", "hybrid", "skip_first", "replace_final")}
    assert visits["distilled"] == [("distilled", t, 0.0) for t in (999, 749, 499, 249)]
    assert visits["hybrid"] == [("base", 999, 0.0)] + [("distilled", t, 0.0) for t in (749, 499, 249)]
    assert visits["skip_first"] == [("distilled", t, 0.0) for t in (749, 499, 249)]
    assert visits["replace_final"] == [("distilled", t, 0.0) for t in (999, 749, 499)] + [("base", 249, 0.0)]
    base = make_plan(pair, "base").visits()
    assert [t for _, t, _ in base] == [999, 874, 749, 624, 499, 374, 249, 124]
    assert {g for _, _, g in base} == {5.0}


def test_separate_base_schedule_covers_the_span_exactly(tiny_pairs):
    pair = tiny_pairs("tiny_sdxl")
    plan = make_plan(pair, "hybrid", k=1, base_steps=5)
    assert plan.visits() == [("base", t, 0.0) for t in (999, 949, 899, 849, 799)] + [
        ("distilled", t, 0.0) for t in (749, 499, 249)
    ]
    assert plan.segments[0].end_timestep == 749
    tail = make_plan(pair, "replace_final", k=2, base_steps=3).visits()
    assert tail[-3:] == [("base", t, 0.0) for t in (499, 333, 166)]


def test_ddim_base_finds_a_step_count_that_lands_on_the_handover(tiny_pairs):
    pair = tiny_pairs("tiny_sd")  # base: DDIM (no explicit timesteps), trailing spacing
    plan = make_plan(pair, "hybrid", k=1, base_steps=2)
    assert plan.visits()[:3] == [("base", 999, 0.0), ("base", 874, 0.0), ("distilled", 749, 0.0)]
    with pytest.raises(UserError, match="no schedule with base_steps=3"):
        make_plan(pair, "hybrid", k=1, base_steps=3)


def test_records_every_network_call(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    calls = []
    hooks = [
        spec.network.register_forward_pre_hook(
            lambda module, args, kwargs, role=spec.role: calls.append((role, int(kwargs["timestep"][0]))),
            with_kwargs=True,
        )
        for spec in (pair.base, pair.distilled)
    ]
    try:
        plan = make_plan(pair, "hybrid", k=2)
        sample_latents(plan, pair.encode(["x"]), [0], pair.latent_shape)
    finally:
        for hook in hooks:
            hook.remove()
    assert calls == [(role, t) for role, t, _ in plan.visits()]
    assert plan.nfe == 4  # guidance 0 everywhere: one evaluation per step


def test_nfe_counts_classifier_free_guidance(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    assert make_plan(pair, "base").nfe == 2 * 8
    assert make_plan(pair, "hybrid", k=1, base_guidance=5.0).nfe == 2 + 3


def test_seeding_is_per_sample(tiny_pairs):
    pair = tiny_pairs("tiny_sdxl")  # LCM re-noises between steps: the scheduler noise is seeded per sample too
    plan = make_plan(pair, "hybrid", k=1)
    together = sample_latents(plan, pair.encode(["a", "b"]), [11, 12], pair.latent_shape)
    alone = sample_latents(make_plan(pair, "hybrid", k=1), pair.encode(["b"]), [12], pair.latent_shape)
    assert torch.equal(together[1:], alone)  # micro-batching makes it exact, not just close


@pytest.mark.parametrize("name", FAMILIES)
@pytest.mark.parametrize("method", ["distilled", "hybrid"])
def test_a_plan_reused_for_another_batch_starts_its_schedule_again(tiny_pairs, name, method):
    """LCM and DPM-Solver keep their step position inside the scheduler: a plan sampled twice must not start its
    second batch where the first ended (the toy protocol's fid images reuse one plan for 8 batches)."""
    pair = tiny_pairs(name)
    knobs = {"k": 1} if method == "hybrid" else {}
    plan = make_plan(pair, method, **knobs)
    conditioning = pair.encode(["a red circle"] * len(SEEDS))
    first = sample_latents(plan, conditioning, SEEDS, pair.latent_shape)
    second = sample_latents(plan, conditioning, SEEDS, pair.latent_shape)
    assert torch.equal(first, second)
    assert torch.equal(first, _latents(pair, method, **knobs))


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        (dict(method="hybrid", k=5), "out of range"),
        (dict(method="hybrid", k=-1), "out of range"),
        (dict(method="nope"), "unknown method"),
        (dict(method="hybrid", k=1, base_steps=0), "no step"),
        (dict(method="hybrid", k=1, base_steps=400), "more steps than"),
    ],
)
def test_bad_knobs_are_user_errors(tiny_pairs, knobs, message):
    pair = tiny_pairs("tiny_sdxl")
    method = knobs.pop("method")
    with pytest.raises(UserError, match=message):
        make_plan(pair, method, **knobs)
