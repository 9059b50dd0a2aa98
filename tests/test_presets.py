"""Presets of the real pairs (conf/pair_preset/<pair>/{paper,card}.yaml): composition, the settings the paper's
code and the model cards give, a source on every setting, and the load-time checks around them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from diffusers import LCMScheduler
from omegaconf import OmegaConf

from diversity_cli.core.config import compose, conf_dir
from diversity_cli.core.errors import UserError
from diversity_cli.models.loading import TRAIN_SCHEDULE, load_pair
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.record import sampling_settings
from diversity_cli.sampling.sampler import NetworkTimer, sample_latents

REAL_PAIRS = ["sdxl_dmd2", "sdxl_turbo", "sdxl_lightning", "sdxl_lcm", "pixart_alpha_delta", "sd21_turbo"]
PRESETS = ["paper", "card"]
# Keys whose value changes the images: each must carry a comment naming its source (or sit in a block that does).
SOURCED = ("dtype", "resolution", "skip_first_noise", "variant", "file", "scheduler", "steps", "timesteps", "guidance")


def _model(name: str, *overrides: str):
    return compose("generate", [f"model={name}", "method=distilled", *overrides]).model  # any method: the pair alone


@pytest.mark.parametrize("command", ["generate", "x0viz", "transfer_lora", "ablate"])
@pytest.mark.parametrize("preset", PRESETS)
def test_every_command_with_a_model_composes_each_preset(command, preset):
    model = compose(command, ["model=sdxl_dmd2", f"preset={preset}"]).model
    assert model.preset == preset


def test_commands_without_a_preset_choice_get_the_paper_preset():
    # distill and train-lora compose the model alone: the model file's own defaults bring the paper preset
    model = compose("distill", ["model=sdxl_lcm"]).model
    assert (model.preset, model.dtype, model.distilled.guidance) == ("paper", "bfloat16", 0.0)


@pytest.mark.parametrize("name", REAL_PAIRS)
def test_paper_and_card_set_the_same_keys(name):
    """The model file includes paper.yaml and `preset=card` merges card.yaml over it: a key only paper.yaml sets
    would leak into the card preset, so both must set every key."""

    def leaves(node, prefix=""):
        if isinstance(node, dict):
            return {leaf for key, value in node.items() for leaf in leaves(value, f"{prefix}{key}.")}
        return {prefix.rstrip(".")}

    folder = conf_dir() / "pair_preset" / name
    paper, card = (OmegaConf.to_container(OmegaConf.load(folder / f"{p}.yaml")) for p in PRESETS)
    assert leaves(paper) == leaves(card)
    composed = OmegaConf.to_container(_model(name, "preset=card"))
    for key in leaves(card):  # and the card's value is what the composed config holds
        value = composed
        for part in key.split("."):
            value = value[part]
        expected = card
        for part in key.split("."):
            expected = expected[part]
        assert value == expected, key


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("name", REAL_PAIRS)
def test_every_setting_names_its_source(name, preset):
    lines = (conf_dir() / "pair_preset" / name / f"{preset}.yaml").read_text().splitlines()
    assert lines[0].startswith("# preset="), "the file opens with what the preset is and where it comes from"
    unsourced = []
    for i, line in enumerate(lines):
        match = re.match(r"^(\s*)(\w+):", line)
        keys = set(re.findall(r"(\w+):", line.split("#")[0]))  # flow mappings too: network: {variant: null}
        if not match or not keys & set(SOURCED) or "#" in line:
            continue
        indent = len(match.group(1))
        parents = [p for p in lines[:i] if p.strip() and not p.lstrip().startswith("#")]
        parent = next((p for p in reversed(parents) if len(p) - len(p.lstrip()) < indent), "")
        above = lines[i - 1].lstrip() if i else ""
        if "#" not in parent and not above.startswith("#"):
            unsourced.append(line.strip())
    assert unsourced == []


def test_paper_presets_follow_the_papers_code():
    for name in REAL_PAIRS:
        model = _model(name)
        assert (model.preset, model.dtype, model.distilled.guidance) == ("paper", "bfloat16", 0.0), name
        assert model.components.variant is None, name  # load_util.py loads without variants
        assert model.distilled.steps == 4, name
    for name in ("sdxl_dmd2", "sdxl_turbo", "sdxl_lightning", "sdxl_lcm"):  # base-only: notebook cells 4-5
        base = _model(name).base
        assert (base.scheduler["class"], base.steps, base.guidance, base.resolution) == (
            "EulerDiscreteScheduler",  # SDXL's own (model_index.json), its repo config: leading spacing
            50,
            8.0,
            1024,
        )
        assert base.scheduler.overrides == {}


def test_dmd2_timesteps_differ_between_the_papers_code_and_the_card():
    paper, card = _model("sdxl_dmd2"), _model("sdxl_dmd2", "preset=card")
    assert paper.distilled.timesteps is None  # LCMScheduler's own 4-step schedule, as the paper's code
    lcm = LCMScheduler.from_config({**TRAIN_SCHEDULE, "steps_offset": 1})  # SDXL-Base's scheduler config values
    lcm.set_timesteps(paper.distilled.steps)
    assert lcm.timesteps.tolist() == [999, 759, 499, 259]
    assert list(card.distilled.timesteps) == [999, 749, 499, 249]


def test_the_fixed_settings():
    sd21 = _model("sd21_turbo")
    assert sd21.base.network.repo == "stabilityai/stable-diffusion-2-1-base"  # 512 px, epsilon; not the 768 px v model
    assert (sd21.resolution, sd21.base.resolution) == (512, 512)
    for preset in PRESETS:
        lcm = _model("sdxl_lcm", f"preset={preset}").distilled
        assert lcm.network.subfolder is None  # lcm-sdxl keeps its UNet at the repository root
    assert _model("sdxl_lcm", "preset=card").distilled.network.variant == "fp16"
    turbo = _model("sdxl_turbo")
    assert (turbo.resolution, turbo.base.resolution) == (512, 1024)  # hybrids at the student's size, base-only native
    assert _model("sdxl_lcm").distilled.guidance == 0.0 and _model("sdxl_lcm", "preset=card").distilled.guidance == 8.0


@pytest.mark.parametrize("name", ["toy", "tiny_sd"])
def test_pairs_without_presets_keep_their_own_settings(name, tiny_pairs):
    model = _model(name)
    assert model.get("preset") is None and model.get("requested_preset") is None
    if name == "tiny_sd":
        assert tiny_pairs(name).preset is None
    with pytest.raises(UserError, match=f"model '{name}' has no preset 'card'"):
        load_pair(_model(name, "preset=card"), torch.device("cpu"), torch.float32)


@pytest.mark.parametrize("name", ["flux1_dev_schnell", "qwen_image_lightning"])
def test_preset_paper_typed_for_a_pair_the_paper_never_ran_is_refused(name):
    """Its card preset was composed without a word, under the paper's name on the command line."""
    assert _model(name).preset == "card"  # left out: the pair's own preset, as README says
    with pytest.raises(UserError, match=f"model '{name}' has no preset 'paper' .* write preset=card"):
        _model(name, "preset=paper")
    assert _model("sdxl_dmd2", "preset=paper").preset == "paper" and _model("toy", "preset=paper").get("preset") is None


def test_a_pair_whose_schedulers_disagree_on_alphas_cumprod_is_refused():
    model = _model("tiny_sd", "+model.distilled.scheduler.overrides.beta_end=0.02")
    with pytest.raises(UserError, match="different noise schedules"):
        load_pair(model, torch.device("cpu"), torch.float32)


def test_base_only_runs_at_the_base_resolution(tiny_pairs):
    import dataclasses

    pair = dataclasses.replace(tiny_pairs("tiny_sd"), base_size=(64, 64))
    assert pair.for_method("hybrid") is pair
    base = pair.for_method("base")
    assert (base.height, base.width) == (64, 64)
    assert base.latent_shape[1:] == (32, 32) and pair.latent_shape[1:] == (16, 16)


@pytest.mark.parametrize(("noise", "scale"), [("unit", None), ("scaled", "sqrt(1-abar)")])
def test_skip_first_start_noise(tiny_pairs, noise, scale):
    """unit (the paper's): the student's first input is the seed's noise itself (LCM: init_noise_sigma 1);
    scaled: √(1-ᾱ_t) times it, at the first visited timestep."""
    pair = tiny_pairs("tiny_sd")
    plan = make_plan(pair, "skip_first", skip_noise=noise)
    seen = []
    sample_latents(plan, pair.encode(["a"]), [5], pair.latent_shape, on_step=lambda *a: seen.append(a))
    role, _, t, x_in, _ = seen[0]
    seed_noise = torch.randn(pair.latent_shape, generator=torch.Generator().manual_seed(5))
    factor = 1.0 if scale is None else float((1 - plan.segments[0].scheduler.alphas_cumprod[t]).sqrt())
    assert (role, t) == ("distilled", 749)
    torch.testing.assert_close(x_in[0], factor * seed_noise)
    assert make_plan(pair, "skip_first").skip_noise == "unit"  # the pair's default


def test_network_timer_counts_denoiser_calls_only(tiny_pairs):
    pair = tiny_pairs("tiny_sdxl")
    plan = make_plan(pair, "hybrid", k=1)
    timer = NetworkTimer("cpu")
    sample_latents(plan, pair.encode(["a", "b"]), [0, 1], pair.latent_shape, timer=timer)
    assert timer.calls == plan.steps == 4
    assert timer.seconds > 0


def test_sampling_settings_record_both_models_and_the_run(tiny_pairs):
    pair = tiny_pairs("tiny_sdxl")
    plan = make_plan(pair, "hybrid", k=1, base_guidance=1.5)
    record = json.loads(json.dumps(sampling_settings(pair, plan)))
    assert record["preset"] is None and record["resolution"] == [32, 32] and record["dtype"] == "float32"
    assert record["models"]["distilled"]["timesteps"] == [999, 749, 499, 249]
    assert record["models"]["base"]["timesteps"] == [999, 874, 749, 624, 499, 374, 249, 124]
    assert record["models"]["base"]["scheduler"]["class"] == "EulerDiscreteScheduler"
    assert record["models"]["base"]["scheduler"]["config"]["timestep_spacing"] == "trailing"
    assert record["models"]["distilled"]["scheduler"]["config"]["beta_schedule"] == "scaled_linear"
    assert record["segments"] == [
        {"model": "base", "scheduler": "LCMScheduler", "timesteps": [999], "hands_over_at": 749, "guidance": 1.5},
        {
            "model": "distilled",
            "scheduler": "LCMScheduler",
            "timesteps": [749, 499, 249],
            "hands_over_at": 0,
            "guidance": 0.0,
        },
    ]


def test_readme_table_names_every_real_pair():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    section = readme.split("## Real pairs and presets", 1)[1].split("\n## ", 1)[0]
    for name in REAL_PAIRS:
        assert f"`{name}`" in section


def _shipped_pairs() -> list[tuple[str, str]]:
    names = sorted(path.stem for path in (conf_dir() / "model").glob("*.yaml"))
    return [(name, preset) for name in names for preset in (PRESETS if name in REAL_PAIRS else ["paper"])]


@pytest.mark.parametrize(("name", "preset"), _shipped_pairs())
def test_every_shipped_scheduler_override_is_a_setting_its_class_takes(name, preset):
    """A setting the class does not take is refused when the scheduler is made (diffusers would drop it); the real
    pairs cannot be loaded here, so their overrides are checked against the classes' own signatures."""
    import inspect

    import diffusers

    model = _model(name, *([f"preset={preset}"] if name in REAL_PAIRS else []))  # composing checks every key
    for role in ("base", "distilled"):
        scheduler = model[role].get("scheduler") or {}
        if not scheduler.get("class"):
            continue
        cls = getattr(diffusers, scheduler["class"])
        takes = set(inspect.signature(cls.__init__).parameters)
        assert set(scheduler.get("overrides") or {}) <= takes, (name, role, scheduler["class"])
