"""Flow-matching pairs (tiny FLUX, SD3, Qwen-Image + LoRA): the σ-space sampler against the unmodified diffusers
pipelines, bit for bit; the hand-over rule (no conversion, exact landing on the student's σ_k); a closed-form
Gaussian flow; the pinned diffusers behaviours the design relies on; mutants that these tests must catch; and the
adapter-distilled pair (one network, LoRA toggled per role)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch

from diversity_cli.models import flow_tiny
from diversity_cli.models.pair import Conditioning, ModelSpec
from diversity_cli.sampling import flow
from diversity_cli.sampling.flow import FlowPlan, Shift, natural_flow_scheduler
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents

FLOW_PAIRS = ["tiny_flux", "tiny_sd3", "tiny_qwen", "tiny_flux2"]
PROMPT = "a red circle"
SEED = 3


@pytest.fixture(scope="module")
def pairs(tiny_pairs):
    return {name: tiny_pairs(name) for name in FLOW_PAIRS}


def _ours(pair, method: str, **knobs) -> torch.Tensor:
    plan = make_plan(pair, method, **knobs)
    return sample_latents(plan, pair.encode([PROMPT]), [SEED], pair.latent_shape)


def _pipeline(pair, network, scheduler, guidance: float, **call):
    """An unmodified pipeline of the pair's family around `network` and a copy of `scheduler`."""
    components = {
        name: value for name, value in pair.pipe.components.items() if name not in ("transformer", "scheduler")
    }
    pipe = type(pair.pipe)(**components, transformer=network, scheduler=copy.deepcopy(scheduler))
    pipe.set_progress_bar_config(disable=True)
    kwargs = {
        "height": pair.height,
        "width": pair.width,
        "output_type": "latent",
        "max_sequence_length": pair.max_sequence_length,
    }
    if pair.family == "qwen":
        kwargs.update(true_cfg_scale=guidance, negative_prompt=" " if guidance > 1 else None)
    else:
        kwargs["guidance_scale"] = guidance
    if "latents" not in call:
        call["generator"] = [torch.Generator().manual_seed(SEED)]
    return pipe, pipe(prompt=PROMPT, **kwargs, **call).images


def _unpacked(pair, latents: torch.Tensor) -> torch.Tensor:
    """Packed tokens (FLUX, Qwen and FLUX.2 latents inside their pipelines) in the sampler's layout."""
    if pair.family == "sd3":
        return latents
    return pair._unpack(latents, torch.empty(1, *pair.latent_shape))


def _equal(pair, ours: torch.Tensor, output: torch.Tensor) -> bool:
    """Our latents against a pipeline's output_type='latent' result, bit for bit. FLUX.2 returns them
    denormalised and unpatchified, so ours are mapped the same way (the pipeline's own arithmetic)."""
    if pair.family == "flux2":
        return torch.equal(pair.pipeline_latents(ours), output)
    return torch.equal(ours, _unpacked(pair, output))


def _packed(pair, x: torch.Tensor) -> torch.Tensor:
    return x if pair.family == "sd3" else pair._pack(x)


def _unshifted(pair, spec: ModelSpec) -> np.ndarray:
    """The sigmas the family's pipeline hands `set_timesteps` before the scheduler shifts them."""
    if pair.family == "sd3":
        sched = spec.scheduler
        return np.linspace(sched.sigma_max * 1000, sched.sigma_min * 1000, spec.steps) / 1000
    return np.linspace(1.0, 1 / spec.steps, spec.steps)


def _adapters(network, on: bool) -> None:
    if flow_tiny and getattr(network, "peft_config", None):
        network.enable_adapters() if on else network.disable_adapters()


def distilled_matches_pipeline(pair) -> bool:
    spec = pair.distilled
    _adapters(spec.network, True)
    _, expected = _pipeline(pair, spec.network, spec.scheduler, spec.guidance, num_inference_steps=spec.steps)
    return _equal(pair, _ours(pair, "hybrid", k=0), expected)


def base_matches_pipeline(pair, network=None) -> bool:
    spec = pair.base
    network = network if network is not None else spec.network
    _adapters(network, False)
    _, expected = _pipeline(pair, network, spec.scheduler, spec.guidance, num_inference_steps=spec.steps)
    return _equal(pair, _ours(pair, "base"), expected)


# -- against the pipelines -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOW_PAIRS)
def test_k0_equals_the_distilled_pipeline(pairs, name):
    assert distilled_matches_pipeline(pairs[name])


@pytest.mark.parametrize("name", ["tiny_flux", "tiny_sd3", "tiny_flux2"])
def test_all_base_equals_the_base_pipeline(pairs, name):
    assert base_matches_pipeline(pairs[name])


def test_qwen_base_with_its_lora_off_equals_a_pipeline_of_a_network_that_never_had_one(pairs):
    # Bit for bit against a freshly built network without any adapter: disabling the LoRA is the base model.
    fresh = flow_tiny.build_network("qwen", seed=0)
    assert base_matches_pipeline(pairs["tiny_qwen"], network=fresh)


@pytest.mark.parametrize("name", FLOW_PAIRS)
def test_hybrid_equals_two_unmodified_pipeline_calls(pairs, name):
    pair, k, guidance = pairs[name], 2, 3.0
    student = pair.distilled
    n = student.steps
    # 1) the base network on the student's scheduler and schedule, interrupted after k steps, latents out
    _adapters(pair.base.network, False)

    captured = {}

    def stop_after_k(pipe, i, t, kwargs):
        if i == k - 1:
            captured["latents"] = kwargs["latents"]  # FLUX.2's latent output is post-processed; its loop's is not
            pipe._interrupt = True
        return kwargs

    _, handed = _pipeline(
        pair, pair.base.network, student.scheduler, guidance, num_inference_steps=n, callback_on_step_end=stop_after_k
    )
    if pair.family == "flux2":
        handed = _unpacked(pair, captured["latents"])  # its pipeline takes 4-D patchified latents
    # 2) the student from those latents over its tail sigmas (unshifted: its scheduler shifts them as always)
    _adapters(student.network, True)
    tail = _unshifted(pair, student)[k:].tolist()
    # (num_inference_steps=n: FLUX.2's mu depends on the step count it is given, not on len(sigmas))
    _, expected = _pipeline(
        pair, student.network, student.scheduler, student.guidance, latents=handed, sigmas=tail, num_inference_steps=n
    )
    ours = _ours(pair, "hybrid", k=k, base_guidance=guidance)
    assert _equal(pair, ours, expected)


# -- the grids -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", FLOW_PAIRS)
@pytest.mark.parametrize("base_steps", [1, 2, 3, 7])
def test_base_steps_land_exactly_on_the_students_sigma(pairs, name, base_steps):
    pair, k = pairs[name], 2
    plan = make_plan(pair, "hybrid", k=k, base_steps=base_steps)
    base, student = plan.segments
    target = natural_flow_scheduler(pair.distilled).sigmas[k]
    assert len(base.times) == base_steps and base.sigmas[0] == 1.0
    assert torch.equal(base.sigmas[-1], target) and torch.equal(student.sigmas[0], target)
    # evenly spaced in the base's unshifted time, its own shift applied (checked against the scheduler itself
    # where it can take the points: not with shift_terminal, which re-stretches to the last point it is given)
    shift = Shift(pair.base)
    u = np.linspace(1.0, shift.inverse(float(target)), base_steps + 1)
    np.testing.assert_allclose(base.sigmas.numpy(), shift(u), atol=2e-7)
    if not pair.base.scheduler.config.get("shift_terminal"):
        sched = copy.deepcopy(pair.base.scheduler)
        sched.set_timesteps(sigmas=u.tolist(), mu=pair.base.schedule_args.get("mu"))
        np.testing.assert_allclose(base.sigmas.numpy(), sched.sigmas[:-1].numpy(), atol=2e-6)
    # replace_final: the base's last k levels end at σ = 0 exactly
    final = make_plan(pair, "replace_final", k=k, base_steps=base_steps).segments[-1]
    assert float(final.sigmas[-1]) == 0.0 and torch.equal(
        final.sigmas[0], natural_flow_scheduler(pair.distilled).sigmas[-1 - k]
    )


@pytest.mark.parametrize("name", FLOW_PAIRS)
@pytest.mark.parametrize("role", ["base", "distilled"])
def test_our_shift_map_reproduces_the_schedulers_own_grid(pairs, name, role):
    pair = pairs[name]
    spec = pair.spec(role)
    expected = natural_flow_scheduler(spec).sigmas[:-1].numpy()
    np.testing.assert_allclose(Shift(spec)(_unshifted(pair, spec)), expected, atol=2e-6)


def test_sigma_grids_of_the_tiny_pairs_under_the_pinned_diffusers(pairs):
    grids = {
        (name, role): [round(float(s), 4) for s in natural_flow_scheduler(pairs[name].spec(role)).sigmas]
        for name in FLOW_PAIRS
        for role in ("base", "distilled")
    }
    assert grids[("tiny_flux", "distilled")] == [1.0, 0.75, 0.5, 0.25, 0.0]
    assert grids[("tiny_sd3", "distilled")] == [1.0, 0.667, 0.334, 0.001, 0.0]
    assert grids[("tiny_qwen", "distilled")] == [1.0, 0.9, 0.75, 0.5, 0.0]  # mu = ln 3: 3u / (1 + 2u)
    assert grids[("tiny_sd3", "base")][:3] == [1.0, 0.9475, 0.8828]
    assert grids[("tiny_qwen", "base")][-2:] == [0.02, 0.0]  # stretched to shift_terminal
    assert pairs["tiny_flux"].base.schedule_args["mu"] == pytest.approx(0.5 + (64 - 256) * 0.65 / 3840)  # 64 tokens
    assert pairs["tiny_qwen"].base.schedule_args["mu"] == pytest.approx(0.5 + (16 - 256) * 0.4 / 7936)  # 16 tokens


def test_the_pinned_diffusers_traps_the_design_avoids():
    from diffusers import FlowMatchEulerDiscreteScheduler

    shifted = FlowMatchEulerDiscreteScheduler(shift=3.0)
    shifted.set_timesteps(sigmas=[1.0, 0.9, 0.75])  # already-shifted sigmas get shifted again
    assert [round(float(s), 4) for s in shifted.sigmas] == [1.0, 0.9643, 0.9, 0.0]
    dynamic = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True)
    with pytest.raises(ValueError):
        dynamic.set_timesteps(4)  # no mu
    qwen = FlowMatchEulerDiscreteScheduler(
        use_dynamic_shifting=True, base_shift=0.5, max_shift=0.9, shift_terminal=0.02
    )
    qwen.set_timesteps(sigmas=[1.0, 0.99, 0.98], mu=0.5)  # stretched relative to the last sigma given
    assert [round(float(s), 3) for s in qwen.sigmas] == [1.0, 0.512, 0.02, 0.0]
    assert not hasattr(qwen, "alphas_cumprod")


# -- a closed-form Gaussian flow -----------------------------------------------------------------------------------

MEAN, STD = 0.7, 0.4


class _GaussianPair:
    """Data x0 ~ N(MEAN, STD²) per coordinate: the exact velocity E[ε - x0 | x_σ] in closed form."""

    family = "gaussian"

    def velocity(self, network, x, t, cond, uncond, guidance):
        sigma = t.to(torch.float64) / 1000
        var = (1 - sigma) ** 2 * STD**2 + sigma**2
        x0 = MEAN + (1 - sigma) * STD**2 / var * (x - (1 - sigma) * MEAN)
        return (x - x0) / sigma

    def evals_per_step(self, network, guidance):
        return 1


class _Net(torch.nn.Module):
    dtype = torch.float64


def _gaussian_spec(role: str, shift: float, steps: int) -> ModelSpec:
    from diffusers import FlowMatchEulerDiscreteScheduler

    spec = ModelSpec(role, role, _Net(), FlowMatchEulerDiscreteScheduler(shift=shift), steps, 0.0)
    spec.schedule_args = {"sigmas": np.linspace(1.0, 1 / steps, steps).tolist()}
    return spec


def _gaussian_error(steps: int = 200, k: int = 100) -> float:
    """Largest gap between a hybrid run (base shift 3 with its own 200 Euler steps down to the student's σ_k = 0.5,
    student shift 1) and the exact flow map ε -> MEAN + STD·ε (Euler's own error is O(1/steps))."""
    pair = _GaussianPair()
    pair.name, pair.base, pair.distilled = (
        "gaussian",
        _gaussian_spec("base", 3.0, steps),
        _gaussian_spec("distilled", 1.0, steps),
    )
    plan = flow.make_flow_plan(pair, "hybrid", k=k, base_steps=steps)
    empty = Conditioning({}, {})
    seeds = list(range(4))
    out = flow.sample_flow(plan, empty, [torch.Generator().manual_seed(s) for s in seeds], (64,))
    noise = torch.stack([torch.randn((64,), generator=torch.Generator().manual_seed(s)) for s in seeds]).double()
    return float((out - (MEAN + STD * noise)).abs().max())


def test_a_hybrid_on_a_closed_form_gaussian_flow_lands_on_the_exact_map():
    assert _gaussian_error() < 2e-2  # 1.1e-2 measured: Euler's own error at 200 steps


# -- mutants these tests must catch -----------------------------------------------------------------------------------


def test_mutant_a_rescaled_hand_over_fails_the_gaussian_test(monkeypatch):
    def rescaled(x, before, after):  # as if the flow latent needed a DDPM-style variance normalisation
        sigma = before.sigmas[-1].double()
        return x / torch.sqrt((1 - sigma) ** 2 + sigma**2)

    monkeypatch.setattr(flow, "handover", rescaled)
    assert _gaussian_error() > 0.1


def test_mutant_a_double_shifted_grid_fails_the_pipeline_test(pairs, monkeypatch):
    pair = pairs["tiny_qwen"]
    shifted = natural_flow_scheduler(pair.distilled).sigmas[:-1].tolist()
    monkeypatch.setitem(pair.distilled.schedule_args, "sigmas", shifted)  # shifted sigmas handed in again
    assert not distilled_matches_pipeline(pair)


def test_mutant_a_wrong_mu_fails_the_pipeline_test(pairs, monkeypatch):
    pair = pairs["tiny_flux"]
    mu = pair.base.schedule_args["mu"]
    monkeypatch.setitem(pair.base.schedule_args, "mu", math.log(math.exp(mu) * 1.05))  # e.g. an unpacked token count
    assert not base_matches_pipeline(pair)


def test_mutant_a_hand_over_one_level_off_is_refused(pairs):
    pair = pairs["tiny_flux"]
    plan = make_plan(pair, "hybrid", k=2, base_steps=3)
    plan.segments[0].sigmas = plan.segments[0].sigmas.clone()
    plan.segments[0].sigmas[-1] += 1e-3
    with pytest.raises(Exception, match="hand-over mismatch"):
        flow.check_handovers(plan.segments)


# -- skip_first, replace_final, x̂0 ---------------------------------------------------------------------------------


def test_skip_first_starts_from_sigma1_times_noise_and_replace_final_ends_on_the_base(pairs):
    pair = pairs["tiny_flux"]
    seen = []
    plan = make_plan(pair, "skip_first")
    assert isinstance(plan, FlowPlan) and plan.steps == pair.distilled.steps - 1
    sample_latents(plan, pair.encode([PROMPT]), [SEED], pair.latent_shape, on_step=lambda *a: seen.append(a))
    sigma1 = natural_flow_scheduler(pair.distilled).sigmas[1]
    noise = torch.randn(pair.latent_shape, generator=torch.Generator().manual_seed(SEED))
    assert torch.allclose(seen[0][3][0], sigma1 * noise, atol=1e-6)
    roles = [v[0] for v in make_plan(pair, "replace_final", k=1).visits()]
    assert roles == ["distilled"] * 3 + ["base"]


def test_x0_trace_is_x_minus_sigma_v_and_the_last_equals_the_output(pairs):
    pair = pairs["tiny_sd3"]
    seen = []
    out = sample_latents(
        make_plan(pair, "distilled"),
        pair.encode([PROMPT]),
        [SEED],
        pair.latent_shape,
        on_step=lambda *a: seen.append(a),
    )
    # the last step goes to σ = 0, where x = x̂0: the final latent is the last x̂0 (up to float rounding)
    assert torch.allclose(seen[-1][4], out, atol=1e-5)
    assert [s[2] for s in seen] == [1000, 667, 334, 1]


# -- adapter-distilled pair --------------------------------------------------------------------------------------------


def test_the_lora_pair_holds_one_network_and_the_lora_changes_it(pairs):
    pair = pairs["tiny_qwen"]
    assert pair.base.network is pair.distilled.network
    assert pair.distilled.adapter and pair.base.adapter is None
    base_params = sum(p.numel() for p in flow_tiny.build_network("qwen", seed=0).parameters())
    held = sum(p.numel() for p in pair.base.network.parameters())
    lora = sum(p.numel() for n, p in pair.base.network.named_parameters() if "lora_" in n)
    assert held == base_params + lora and 0 < lora < base_params / 4
    assert not torch.equal(_ours(pair, "base"), _ours(pair, "hybrid", k=0, base_steps=None))


def test_the_adapter_is_toggled_once_per_role_per_batch(pairs, monkeypatch):
    pair = pairs["tiny_qwen"]
    network = pair.base.network
    calls = []
    for name in ("enable_adapters", "disable_adapters"):
        original = getattr(network, name)
        monkeypatch.setattr(network, name, lambda original=original, name=name: (calls.append(name), original())[1])
    plan = make_plan(pair, "hybrid", k=2)
    sample_latents(plan, pair.encode([PROMPT, "a dog"]), [0, 1], pair.latent_shape)
    assert calls == ["disable_adapters", "enable_adapters"]


# -- the commands ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["tiny_flux", "tiny_qwen"])
def test_generate_runs_a_flow_pair_from_the_command_line(cli, tmp_path, model):
    code, _, err = cli(
        "generate",
        f"model={model}",
        "method=hybrid",
        "k=2",
        "base_steps=3",
        f"prompt={PROMPT}",
        "n=2",
        f"out={tmp_path}",
    )
    assert code == 0, err
    import csv

    with (tmp_path / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["method"], r["steps"], r["base_steps"]) for r in rows] == [("hybrid", "5", "3")] * 2
    assert all((tmp_path / r["path"]).is_file() for r in rows)


def test_x0viz_and_ablate_run_on_flow_pairs(cli, tmp_path):
    code, _, err = cli("x0viz", "model=tiny_qwen", f"prompt={PROMPT}", "n=2", "metric=pixel", f"out={tmp_path / 'x0'}")
    assert code == 0, err
    assert list((tmp_path / "x0").glob("x0_tiny_qwen_*.png")) and (tmp_path / "x0" / "commitment_summary.csv").is_file()
    code, _, err = cli(
        "ablate", "model=tiny_sd3", "k=1", "n=2", "metric=pixel", f"prompt={PROMPT}", f"out={tmp_path / 'ab'}"
    )
    assert code == 0, err
    import csv

    with (tmp_path / "ab" / "ablate.csv").open(newline="") as f:
        rows = {(r["method"], r["k"]): r for r in csv.DictReader(f)}
    assert {("hybrid", "1"), ("base", ""), ("distilled", "")} <= set(rows)
    assert rows[("base", "")]["nfe"] == "16"  # 8 base steps with CFG: two evaluations each


def test_mutant_a_grid_spaced_in_shifted_time_fails_the_landing_test(pairs, monkeypatch):
    # Forgetting shift⁻¹: the base's points are spaced from 1 to σ_k itself and then shifted, so its grid is not
    # the one the rule defines (and, without the forced end point, it would land on shift(σ_k), not σ_k).
    monkeypatch.setattr(Shift, "inverse", lambda self, sigma: sigma)
    with pytest.raises(AssertionError):
        test_base_steps_land_exactly_on_the_students_sigma(pairs, "tiny_flux", 3)


# -- real flow pairs: what the loader would read ----------------------------------------------------------------------


def test_the_lightning_pair_reads_one_transformer_and_a_lora_file_that_exists():
    from test_manifest import missing

    from diversity_cli.core.config import compose
    from diversity_cli.models.hub import hub_calls

    calls = hub_calls(compose("generate", ["model=qwen_image_lightning"]).model)
    assert [c.kind for c in calls if c.kind in ("network", "network_config")] == ["network"]  # the base's only
    (lora,) = [c for c in calls if c.role == "distilled"]
    assert (lora.kind, lora.repo) == ("weights", "lightx2v/Qwen-Image-Lightning")
    assert missing(lora) == []


@pytest.mark.parametrize("name", ["qwen_image_lightning", "flux1_dev_schnell", "sd35_large_turbo", "flux2_klein_4b"])
def test_real_flow_pairs_compose_with_their_card_settings(name):
    from diversity_cli.core.config import compose

    model = compose("generate", [f"model={name}"]).model
    assert model.preset == "card" and model.family in ("qwen", "flux", "sd3", "flux2")
    assert model.distilled.steps < model.base.steps and model.distilled.guidance <= 1.0


# -- the same adapter mechanism on a DDPM-family pair (SDXL + DMD2-/LCM-LoRA, Hyper-SD) --------------------------------


def test_an_sdxl_lora_pair_holds_one_unet_and_its_base_is_the_plain_base_bit_for_bit(tiny_pairs):
    lora, plain = tiny_pairs("tiny_sdxl_lora"), tiny_pairs("tiny_sdxl")
    assert lora.base.network is lora.distilled.network and lora.distilled.adapter
    encode = lora.encode([PROMPT])

    def run(pair, method, **knobs):
        return sample_latents(make_plan(pair, method, **knobs), encode, [SEED], pair.latent_shape)

    assert torch.equal(run(lora, "base"), run(plain, "base"))  # adapter off: tiny_sdxl's base exactly
    hybrid = run(lora, "hybrid", k=2)
    assert not torch.equal(hybrid, run(lora, "hybrid", k=4))  # the adapter is on for the student's steps
    assert torch.equal(hybrid, run(lora, "hybrid", k=2))  # and toggled back each batch: runs repeat exactly
