"""transfer-lora and train-lora on the tiny pairs: adapters built in the tests (random LoRA, a Concept Slider file in
the sliders repository's key format, Custom Diffusion processors), applied to both networks of a pair and removed
without a trace; the command end to end with a tiny offline CLIP."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from diversity_cli.core.errors import UserError
from diversity_cli.core.marker import MARKER, RunMarker
from diversity_cli.core.prompts import prompt_id
from diversity_cli.experiments.transfer import COLUMNS
from diversity_cli.models.adapters import applied, lora_layers, read_adapter
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents

PROMPT = "a cat"  # the tiny CLIP scores its images above 0 against this text, so change_pct is defined


def latents(pair, role: str, seed: int = 0) -> torch.Tensor:
    plan = make_plan(pair, role)
    return sample_latents(plan, pair.encode([PROMPT]), [seed], pair.latent_shape, pair.device)


def state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def assert_same_state(before: dict[str, torch.Tensor], module: torch.nn.Module) -> None:
    after = module.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(before[k], after[k]) for k in before)


def attention_projections(network: torch.nn.Module) -> int:
    return sum(1 for name, _ in network.named_modules() if name.endswith(("to_q", "to_k", "to_v", "to_out.0")))


def save_random_lora(pair, folder: Path, seed: int = 0) -> Path:
    """A random diffusers-format LoRA on the attention projections, trained on nothing: peft on a copy of the base
    network, saved by the pipeline's own save_lora_weights."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    network = copy.deepcopy(pair.base.network)
    network.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if "lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    type(pair.pipe).save_lora_weights(str(folder), unet_lora_layers=get_peft_model_state_dict(network))
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def lora_file(tiny_pairs, tmp_path_factory):
    return save_random_lora(tiny_pairs("tiny_sd"), tmp_path_factory.mktemp("lora") / "random")


def test_one_lora_file_changes_both_models_scale_zero_is_exact_and_unloading_restores(tiny_pairs, lora_file):
    pair = tiny_pairs("tiny_sd")
    adapter = read_adapter(str(lora_file.parent))
    assert (adapter.kind, adapter.name) == ("lora", "random")
    assert adapter.network_layers == attention_projections(pair.base.network) > 0
    text_before = state(pair.pipe.text_encoder)
    for role in ("base", "distilled"):
        network = pair.spec(role).network
        before, plain = state(network), latents(pair, role)
        with applied(pair, role, adapter, 1.0):
            assert lora_layers(network) == adapter.network_layers
            adapted = latents(pair, role)
        with applied(pair, role, adapter, 0.0):
            zero = latents(pair, role)
        assert (adapted - plain).abs().max() > 1e-2  # the same file acts on either network of the pair
        assert torch.equal(zero, plain)
        assert_same_state(before, network)
        assert lora_layers(network) == 0 and torch.equal(latents(pair, role), plain)
        assert pair.pipe.unet is pair.base.network
    assert_same_state(text_before, pair.pipe.text_encoder)


def test_a_concept_slider_file_in_the_sliders_repository_format_loads_with_its_alpha_and_scale(tiny_pairs, tmp_path):
    # rohitgandikota/sliders LoRANetwork: a LoRA on every Linear of every Attention module, keys
    # lora_unet_<module path with _>.lora_down.weight / .lora_up.weight / .alpha, saved with torch.save as .pt
    pair = tiny_pairs("tiny_sdxl")
    rank, alpha, scale = 4, 1.0, -2.5
    generator = torch.Generator().manual_seed(3)
    weights, layers = {}, {}
    for name, module in pair.base.network.named_modules():
        if type(module).__name__ != "Attention":
            continue
        for child, linear in module.named_modules():
            if isinstance(linear, torch.nn.Linear):
                key = f"lora_unet_{name}.{child}".replace(".", "_")
                weights[f"{key}.lora_down.weight"] = torch.randn(rank, linear.in_features, generator=generator)
                weights[f"{key}.lora_up.weight"] = torch.randn(linear.out_features, rank, generator=generator) * 0.1
                weights[f"{key}.alpha"] = torch.tensor(alpha)
                layers[f"{name}.{child}"] = key
    torch.save(weights, tmp_path / "age_slider.pt")
    adapter = read_adapter(str(tmp_path / "age_slider.pt"))
    assert (adapter.kind, adapter.name, adapter.network_layers) == ("kohya", "age_slider", len(layers))
    name, key = next(iter(layers.items()))
    x = torch.randn(3, weights[f"{key}.lora_down.weight"].shape[1], generator=generator)
    for role in ("base", "distilled"):
        network = pair.spec(role).network
        before, plain = state(network), latents(pair, role)
        with applied(pair, role, adapter, scale):
            assert lora_layers(network) == len(layers)
            layer = network.get_submodule(name)
            delta = layer(x) - layer.base_layer(x)
            adapted = latents(pair, role)
        expected = (
            scale * (alpha / rank) * x @ weights[f"{key}.lora_down.weight"].T @ weights[f"{key}.lora_up.weight"].T
        )
        torch.testing.assert_close(delta, expected, rtol=1e-4, atol=1e-5)
        assert (adapted - plain).abs().max() > 1e-2
        assert_same_state(before, network)


def test_custom_diffusion_weights_load_into_both_networks(tiny_pairs, tmp_path):
    from diffusers.models.attention_processor import CustomDiffusionAttnProcessor

    pair = tiny_pairs("tiny_sd")
    trained = copy.deepcopy(pair.base.network)
    generator = torch.Generator().manual_seed(5)
    processors = {}
    for name in trained.attn_processors:
        attention = trained.get_submodule(name.removesuffix(".processor"))
        if not attention.is_cross_attention:  # as diffusers' train_custom_diffusion.py: untrained processors
            processors[name] = CustomDiffusionAttnProcessor(train_kv=False, train_q_out=False)
            continue
        custom = CustomDiffusionAttnProcessor(True, False, attention.to_k.out_features, attention.to_k.in_features)
        with torch.no_grad():
            for mine, own in (
                (custom.to_k_custom_diffusion, attention.to_k),
                (custom.to_v_custom_diffusion, attention.to_v),
            ):
                mine.weight.copy_(own.weight + torch.randn(own.weight.shape, generator=generator))
        processors[name] = custom
    trained.set_attn_processor(dict(processors))
    trained.save_attn_procs(str(tmp_path / "cd"))
    adapter = read_adapter(str(tmp_path / "cd"))
    assert adapter.kind == "custom_diffusion"

    sample = torch.randn(1, *pair.latent_shape, generator=generator)
    text = pair.encode([PROMPT]).cond

    def output(network):
        return network(sample, torch.tensor([500]), **text).sample

    with torch.no_grad():
        for role in ("base", "distilled"):
            network = pair.spec(role).network
            before, plain = state(network), output(network)
            reference = copy.deepcopy(network)  # diffusers' own processors with the same weights, set by hand
            own = reference.attn_processors
            custom = {n: copy.deepcopy(p) for n, p in processors.items() if isinstance(p, CustomDiffusionAttnProcessor)}
            reference.set_attn_processor({n: custom[n] if custom[n].train_kv else own[n] for n in processors})
            with applied(pair, role, adapter, 1.0):
                adapted = output(network)
            with applied(pair, role, adapter, 0.0):  # scale 0: the network's own K/V projections
                zero = output(network)
            torch.testing.assert_close(adapted, output(reference), rtol=1e-4, atol=1e-5)
            assert (adapted - plain).abs().max() > 1e-2
            torch.testing.assert_close(zero, plain, rtol=1e-4, atol=1e-5)
            assert_same_state(before, network)
            assert torch.equal(output(network), plain)


def test_unknown_or_misfitting_adapters_fail_with_one_line(cli, tiny_pairs, tmp_path, lora_file):
    from safetensors.torch import save_file

    save_file({"encoder.layer.weight": torch.zeros(2, 2)}, str(tmp_path / "mystery.safetensors"))
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={tmp_path / 'mystery.safetensors'}", "prompt=a")
    assert code == 2 and "unknown adapter format" in err and len(err.strip().splitlines()) == 1
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={tmp_path / 'absent'}", "prompt=a")
    assert code == 2 and "no such file" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "adapters.csv").write_text("adapter,scale\nx,1\n")  # read as a pickle it refused, "could run code"
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={tmp_path / 'adapters.csv'}", "prompt=a")
    assert code == 2 and "is a text file, not weights" in err and "adapters=FILE" in err and "pickle" not in err

    sdxl = tiny_pairs("tiny_sdxl")  # an SD LoRA on an SDXL network: other modules, other widths
    before = state(sdxl.distilled.network)
    with pytest.raises(UserError, match="does not fit|fit tiny_sdxl"):
        with applied(sdxl, "distilled", read_adapter(str(lora_file)), 1.0):
            pass
    assert_same_state(before, sdxl.distilled.network)
    assert lora_layers(sdxl.distilled.network) == 0 and sdxl.pipe.unet is sdxl.base.network


def test_a_bare_adapter_file_on_the_toy_asks_for_its_concept(cli, tmp_path, lora_file):
    """A file with no train-lora record beside it names no concept: the toy classifier needs one. The line said
    "concept 'None' names 0 toy factor values"."""
    code, _, err = cli("transfer-lora", f"adapter={lora_file}", "prompt=a shape", f"out={tmp_path / 'run'}")
    assert code == 2 and "records no concept: give concept=" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    ("args", "said"),
    [(("classifier=false",), "a toy pair has no CLIP (clip_model=auto) and classifier=false: transfer-lora would "
                             "measure nothing; keep classifier=auto (the toy classifier) or give clip_model="),
     (("model=tiny_sd", "clip_model=none"), "clip_model=none and the toy classifier is off on a pair of no toy scenes: "
                                            "transfer-lora would measure nothing; give clip_model=")],
)  # fmt: skip
def test_a_transfer_with_nothing_to_measure_is_refused(cli, tmp_path, lora_file, args, said):
    """On the toy with the classifier off it made every image and wrote transfer.csv rows of empty scores, exit 0."""
    code, _, err = cli("transfer-lora", f"adapter={lora_file}", "prompt=a shape", *args, f"out={tmp_path / 'run'}")
    assert code == 2 and said in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "run").exists()


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _clip_score(paths: list[Path], text: str) -> float:
    """CLIPScore by hand: max(0, mean over images of 100 x cosine of the tiny CLIP's projected embeddings)."""
    from diversity_cli.metrics.quality import tiny_clip

    model, processor = tiny_clip()
    images = [np.array(Image.open(p).convert("RGB")) for p in paths]
    with torch.no_grad():
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        tokens = processor(text=[text] * len(images), return_tensors="pt", padding=True)
        image = model.visual_projection(model.vision_model(pixel_values=pixels).pooler_output)
        words = model.text_projection(model.text_model(**tokens).pooler_output)
    return max(0.0, float(100 * torch.nn.functional.cosine_similarity(image, words, dim=-1).mean()))


def test_transfer_lora_end_to_end_on_tiny_sd(cli, tiny_pairs, tmp_path, lora_file):
    out = tmp_path / "run"
    args = ("transfer-lora", "model=tiny_sd", f"adapter={lora_file}", f"concept={PROMPT}", f"prompt={PROMPT}",
            "n=2", "clip_model=tiny_random", "grid_seeds=2", "grid_cell=32", f"out={out}")  # fmt: skip
    code, shown, err = cli(*args)
    assert code == 0, err
    rows = _rows(out / "transfer.csv")
    for row in rows:  # the summary's headline: each row's Table 1 number with the means it is a ratio of, and n
        line = next(line for line in shown.splitlines() if f"random x1: base -> {row['target']} " in line)
        assert f"change_pct {float(row['change_pct']):+.1f}%" in line and line.rstrip(" │").endswith("n=2")
    with (out / "transfer.csv").open() as f:
        assert f.readline().strip().split(",")[: len(COLUMNS)] == COLUMNS
    assert [(r["adapter"], r["source"], r["target"], r["n"]) for r in rows] == [
        ("random", "base", "base", "2"), ("random", "base", "distilled", "2")
    ]  # fmt: skip
    samples = _rows(out / "samples.csv")
    for row in rows:
        without = [out / s["path"] for s in samples if s["tag"] == row["target"]]
        with_ = [out / s["path"] for s in samples if s["tag"] == f"{row['target']}+random_s1"]
        assert len(without) == len(with_) == 2
        assert float(row["clip_without"]) == pytest.approx(_clip_score(without, PROMPT), rel=1e-4, abs=1e-4)
        assert float(row["clip_with"]) == pytest.approx(_clip_score(with_, PROMPT), rel=1e-4, abs=1e-4)
        clip_without, clip_with = float(row["clip_without"]), float(row["clip_with"])
        assert clip_without > 0
        assert float(row["change_pct"]) == pytest.approx(100 * (clip_with - clip_without) / clip_without, rel=1e-4)
    grid = Image.open(out / f"transfer_tiny_sd_random_s1_{prompt_id(PROMPT)}.png")
    assert grid.size == (130 + 2 * 2 * 32, 16 + 2 * 32)  # rows: base -> base, base -> distilled; 2 seeds x 2

    assert {(r["prompts"], r["adapter_hash"]) for r in rows} == {(PROMPT, read_adapter(str(lora_file)).digest)}
    assert {r["adapter_file"] for r in rows} == {str(lora_file.resolve())}  # the report checks it against the hash
    assert {r["seed"] for r in rows} == {"0"}  # seed=, the prompt's first seed
    code, _, err = cli(*args)  # nothing new to make; no duplicated rows
    assert code == 0, err
    assert _rows(out / "samples.csv") == samples and len(_rows(out / "transfer.csv")) == 2
    assert len(list((out / "runs").glob("*.json"))) == 2  # the rewritten numbers' command is recorded too
    code, _, err = cli("generate", "model=tiny_sd", "method=distilled", f"prompt={PROMPT}", "n=2", f"out={out}")
    assert code == 0 and "nothing to do" in err  # the without-adapter images are generate's own

    other = save_random_lora(tiny_pairs("tiny_sd"), tmp_path / "elsewhere" / "random", seed=9)  # same name
    code, _, err = cli(*args[:2], f"adapter={other}", *args[3:])
    assert code == 2 and "overwrite=true" in err  # its images would land in the same folders: never mixed up


@pytest.mark.parametrize("mode", ["lora", "slider"])
def test_train_lora_saves_a_trained_adapter_that_transfer_lora_loads(cli, tiny_pairs, tmp_path, mode):
    out = tmp_path / mode
    extra = ("concept=large", "negative=small") if mode == "slider" else ("concept=red",)
    args = ("train-lora", "model=tiny_sd", f"mode={mode}", *extra, "steps=3", "images=16", "batch_size=4",
            f"out={out}")  # fmt: skip
    code, _, err = cli(*args)
    assert code == 0, err
    meta = json.loads((out / "adapter.json").read_text())
    assert np.isfinite(meta["final_loss"]) and meta["steps"] == 3 and meta["mode"] == mode
    assert meta["trained_on"] == "base"  # what transfer-lora checks direction= against
    adapter = read_adapter(str(out))
    assert adapter.kind == "lora" and adapter.network_layers == attention_projections(
        tiny_pairs("tiny_sd").base.network
    )
    from safetensors.torch import load_file

    ups = [v for k, v in load_file(str(out / "pytorch_lora_weights.safetensors")).items() if "lora_B" in k]
    assert ups and all(torch.isfinite(v).all() for v in ups) and any(v.abs().max() > 0 for v in ups)  # B starts at 0
    pair = tiny_pairs("tiny_sd")
    plain = latents(pair, "distilled")
    with applied(pair, "distilled", adapter, 1.0):
        assert not torch.equal(latents(pair, "distilled"), plain)
    stamp = (out / "pytorch_lora_weights.safetensors").stat().st_mtime_ns
    code, _, err = cli(*args)
    assert code == 0 and "nothing to do" in err
    assert (out / "pytorch_lora_weights.safetensors").stat().st_mtime_ns == stamp


def test_train_lora_overwrite_with_a_setting_refused_at_load_keeps_the_earlier_adapter(cli, tmp_path):
    out = tmp_path / "red"
    args = ("train-lora", "model=tiny_sd", "concept=red", "steps=2", "images=8", "batch_size=4", f"out={out}")
    assert cli(*args)[0] == 0
    weights = (out / "pytorch_lora_weights.safetensors").read_bytes()
    code, _, err = cli(*args, "overwrite=true", "model.base.scheduler.class=NoSuchScheduler")
    assert code == 2 and "NoSuchScheduler" in err
    assert (out / "pytorch_lora_weights.safetensors").read_bytes() == weights
    code, _, err = cli(*args)  # its settings file is still the trained adapter's: nothing to do
    assert code == 0 and "nothing to do" in err
    # target modules the network lacks: refused before any earlier file goes or a settings file is written
    fresh = (
        "train-lora",
        "model=tiny_sd",
        "concept=red",
        "steps=2",
        "images=8",
        "batch_size=4",
        f"out={tmp_path / 'b'}",
    )
    # peft's line named only what it did not find, cut at a container (`to_out`), and a list where one name matched
    # trained without the others
    cases = (
        ("no_such_module", "no_such_module names no layer of the network (nor the end of one);"),
        ("to_out", "to_out names down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_out (a ModuleList), a block"),
        ("0", "0 names down_blocks.0 (a CrossAttnDownBlock2D), a block, not a layer LoRA goes on;"),
        ("to_q,to_vv", "to_vv names no layer of the network (nor the end of one); did you mean to_v?"),
    )
    for targets, said in cases:
        code, _, err = cli(*fresh, f"target_modules=[{targets}]")
        assert code == 2 and said in err and "its layer names: conv" in err, err
        assert "to_out.0" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "b").exists()  # nothing written: it left run.json and a runs/ record
    assert cli(*fresh)[0] == 0  # the corrected command needs no overwrite=true


def test_train_lora_refuses_a_concept_before_the_preflight(cli, tmp_path, monkeypatch):
    """A concept the toy world has no value for was refused only after the preflight had loaded the pair's
    schedulers (seconds, and its timing note as a second line)."""
    from diversity_cli.commands import checks

    def preflight(*_):
        raise AssertionError("the preflight ran before the concept was checked")

    monkeypatch.setattr(checks, "prepare", preflight)
    code, _, err = cli("train-lora", "concept=notacolor", f"out={tmp_path / 'lora'}")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "concept=notacolor is not a value" in err, err
    assert not (tmp_path / "lora").exists()


def test_train_lora_is_deterministic_given_its_seed(cli, tmp_path):
    def trained(name: str, *extra: str) -> bytes:
        args = ("train-lora", "model=tiny_sd", "concept=red", "steps=1", "images=8", "batch_size=4", *extra)
        code, _, err = cli(*args, f"out={tmp_path / name}")
        assert code == 0, err
        return (tmp_path / name / "pytorch_lora_weights.safetensors").read_bytes()

    first = trained("a")
    assert trained("b") == first  # the LoRA init included: peft draws it from torch's global generator
    assert trained("c", "seed=1") != first


def test_training_captions_never_name_the_concept_and_slider_pairs_differ_only_in_it():
    from omegaconf import OmegaConf

    from diversity_cli.toy.data import parse_prompt
    from diversity_cli.toy.lora import training_scenes

    cfg = OmegaConf.create({"images": 40, "data_seed": 1})
    positive, negative, captions = training_scenes(cfg, "color", "red", None)
    assert negative is None and len(captions) == 40 and positive.shape[0] == 40
    assert all("color" not in parse_prompt(c) for c in captions)
    big, small, captions = training_scenes(cfg, "size", "large", "small")
    assert all("size" not in parse_prompt(c) for c in captions)
    # same scenes but for the size: the large shape covers more pixels that differ from the background
    corner = big[:, :1, :1].astype(int)
    area = lambda images: (np.abs(images.astype(int) - corner).sum(-1) > 60).sum(axis=(1, 2))  # noqa: E731
    assert (area(big) > area(small)).mean() > 0.9


def test_on_a_lora_distilled_pair_the_adapter_stacks_on_the_distillation_lora(tiny_pairs, tmp_path):
    # tiny_sdxl_lora's student is a LoRA on tiny_sdxl's base UNet: the transferred adapter stays on for both roles
    # (the base with it is tiny_sdxl's base with it, bit for bit), the distillation LoRA for the student only.
    lora_pair, plain_pair = tiny_pairs("tiny_sdxl_lora"), tiny_pairs("tiny_sdxl")
    adapter = read_adapter(str(save_random_lora(plain_pair, tmp_path / "sdxl").parent))
    network = lora_pair.base.network
    before, distilled_plain = state(network), latents(lora_pair, "distilled")
    with applied(lora_pair, "base", adapter, 1.0):
        base_with, distilled_with = latents(lora_pair, "base"), latents(lora_pair, "distilled")
    with applied(plain_pair, "base", adapter, 1.0):
        assert torch.equal(base_with, latents(plain_pair, "base"))
    assert not torch.equal(distilled_with, distilled_plain) and not torch.equal(distilled_with, base_with)
    assert list(network.peft_config) == ["distilled"]  # leaving removed the transferred adapter only
    assert_same_state(before, network)
    assert torch.equal(latents(lora_pair, "distilled"), distilled_plain)


def test_images_of_a_student_changed_in_place_are_not_joined_by_new_ones(cli, tiny_pairs, tmp_path):
    """transfer-lora's samples carry the weights they ran, as generate's do: a student retrained into the same
    folder (same path, same config) would otherwise add its images to the old student's under one label."""
    import shutil

    from diversity_cli.core.resources import asset

    lora = save_random_lora(tiny_pairs("toy"), tmp_path / "lora")
    student = tmp_path / "student"
    shutil.copytree(asset("toy/dmd_student"), student)
    args = ["transfer-lora", "model=toy", f"adapter={lora}", "concept=red", "classifier_target='color=red'",
            "prompt=a red circle", "clip_model=tiny_random", "grid_seeds=2", "grid_cell=32", f"out={tmp_path / 'run'}",
            f"model.distilled.network.path={student}"]  # fmt: skip
    assert cli(*args, "n=2")[0] == 0
    weights = student / "diffusion_pytorch_model.safetensors"
    shutil.copy(asset("toy/dp_dmd_student") / weights.name, weights)
    code, _, err = cli(*args, "n=3")
    assert code == 2 and "2 distilled image(s) of toy that other weights made" in err


def test_an_adapter_of_another_architecture_is_one_line_before_any_image(cli, tiny_pairs, tmp_path):
    """An SDXL LoRA given to an SD pair: refused once the pair loads, naming what does not fit, before the
    without-adapter images are made (it used to fail only when first applied, after them, under diffusers' logs)."""
    lora = save_random_lora(tiny_pairs("tiny_sdxl"), tmp_path / "sdxl_lora")
    out = tmp_path / "run"
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={lora}", "prompt=a photo", "concept=a photo",
                       "n=2", "clip_model=tiny_random", f"out={out}")  # fmt: skip
    assert code == 2 and "does not fit tiny_sd's base network" in err and "size mismatch" in err
    assert len(err.strip().splitlines()) == 1, err
    assert not (out / "samples.csv").exists() and not list(out.rglob("*.png"))


def test_a_direction_against_the_adapters_own_record_is_one_line_and_writes_nothing(cli, tiny_pairs, tmp_path):
    """train-lora records the model it trained on (adapter.json's trained_on): a direction naming the other would
    label every row of transfer.csv with the wrong source, so it is refused before any model loads, for adapter=,
    reverse_adapter= and each row of adapters=. The matching direction runs; an adapter without the record (a hub
    LoRA) takes the direction given."""
    lora = save_random_lora(tiny_pairs("toy"), tmp_path / "red")
    record = lora.parent / "adapter.json"  # as train-lora writes it (its test checks trained_on)
    record.write_text(json.dumps({"name": "red", "concept": "red", "trained_on": "base"}))
    table = tmp_path / "adapters.csv"
    table.write_text("name\nred\n")
    common = ("transfer-lora", "model=toy", "prompt=a shape", "concept=red", "n=1", "grid_seeds=0")
    out = tmp_path / "run"
    refused = {
        "adapter=": (f"adapter={lora.parent}", "direction=distilled_to_base"),
        "reverse_adapter=": (f"adapter={lora.parent}", f"reverse_adapter={lora.parent}", "direction=both"),
        "line 2: adapter red": (f"adapters={table}", "direction=distilled_to_base"),
    }
    for what, args in refused.items():
        code, _, err = cli(*common, *args, f"out={out}")
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert what in err and "was trained on base (adapter.json)" in err, err
        assert not out.exists()
    assert "use direction=base_to_distilled" in cli(*common, *refused["adapter="], f"out={out}")[2]

    code, _, err = cli(*common, f"adapter={lora.parent}", "direction=base_to_distilled", f"out={out}")
    assert code == 0, err
    assert {r["source"] for r in _rows(out / "transfer.csv")} == {"base"}
    record.unlink()
    code, _, err = cli(*common, f"adapter={lora.parent}", "direction=distilled_to_base", f"out={tmp_path / 'hub'}")
    assert code == 0, err
    assert {r["source"] for r in _rows(tmp_path / "hub" / "transfer.csv")} == {"distilled"}


def test_a_file_of_yours_at_a_grids_name_stops_the_command_before_any_image(cli, tiny_pairs, tmp_path):
    """A transfer grid's name was checked only when the grid was drawn: every image made and scored, then
    exit 2 with no summary; it is checked with transfer.csv, before anything."""
    lora = save_random_lora(tiny_pairs("toy"), tmp_path / "red")
    out = tmp_path / "run"
    RunMarker(out).claim()  # in a run directory: a folder of the user's is refused as a whole
    grid = f"transfer_toy_red_s1_{prompt_id('a shape')}.png"
    (out / grid).write_text("mine\n")
    args = ("transfer-lora", "model=toy", "prompt=a shape", "concept=red", "n=1", f"adapter={lora.parent}")
    code, _, err = cli(*args, f"out={out}")
    assert code == 2 and f"{grid} exists and was not written by diversity-cli" in err, err
    assert sorted(p.name for p in out.iterdir() if p.name not in (MARKER, ".run.json.lock")) == [grid]


def test_the_grids_of_two_prompts_into_one_run_are_two_files(cli, tiny_pairs, tmp_path):
    """transfer_<adapter>_s<scale>.png was the grid of whichever prompt ran last: the second prompt's drew over
    the first's. Each pair and prompt has its own file now."""
    lora = save_random_lora(tiny_pairs("toy"), tmp_path / "red")
    args = ("transfer-lora", "model=toy", "concept=red", "n=1", f"adapter={lora.parent}", f"out={tmp_path / 'run'}")
    for prompt in ("a shape", "a circle"):
        assert cli(*args, f"prompt={prompt}")[0] == 0
    grids = sorted(path.name for path in (tmp_path / "run").glob("transfer_*.png"))
    assert grids == sorted(f"transfer_toy_red_s1_{prompt_id(p)}.png" for p in ("a shape", "a circle"))


def test_the_summary_of_a_clip_score_of_zero_says_why_there_is_no_change():
    """CLIPScore's max(0, mean) was 0 without the adapter: no % change exists. The summary said "no CLIP model"."""
    from diversity_cli.commands.summary import Summary, _transfer
    from diversity_cli.experiments.transfer import Measured

    row = {"adapter": "red", "scale": "1", "source": "base", "target": "distilled", "concept": "red", "n": "4",
           "clip_without": "0", "clip_with": "0.5", "change_pct": "", "clip_model": "tiny_random"}  # fmt: skip
    summary = Summary("transfer-lora", 1.0)
    _transfer(summary, Measured(Path("transfer.csv"), [row, {**row, "clip_model": ""}], []))
    (_, with_clip), (_, without) = summary.headline
    assert with_clip == "no change_pct (CLIP score toward 'red' 0 -> 0.5: a change of a score of 0), n=4"
    assert without == "no score (no CLIP model), n=4"


def test_the_summary_gives_a_classifier_share_the_interval_table_1_gives_it():
    """The summary rounded the interval its own way ([0.41, 0.93]) beside Table 1's cells (0.4093, 0.9285)."""
    from diversity_cli.commands.summary import Summary, _transfer
    from diversity_cli.experiments.transfer import Measured
    from diversity_cli.reporting.tables.table1 import share_interval

    row = {"adapter": "red", "scale": "1", "source": "base", "target": "distilled", "concept": "red", "n": "8",
           "clip_without": "0.2", "clip_with": "0.3", "change_pct": "50", "classifier_target": "color=red",
           "classifier_without": "0.75", "classifier_with": "1"}  # fmt: skip
    summary = Summary("transfer-lora", 1.0)
    _transfer(summary, Measured(Path("transfer.csv"), [row], []))
    low, high = share_interval("0.75", "8")
    assert f"0.75 [{low}, {high}] -> 1 [" in summary.headline[0][1], summary.headline


def test_transfer_rows_at_another_n_or_seed_stand_beside_each_other(tmp_path):
    """A quick n=4 check after the n=50 run replaced its row, and transfer.csv did not say which seed= a row was
    made at. n and seed are in the key now; a row written before rows named their seed is replaced, as before."""
    from diversity_cli.experiments.transfer import write_results

    def row(n: int, seed: str, value: str) -> dict:
        return {"adapter": "red", "concept": "red", "source": "base", "target": "distilled", "n": n, "seed": seed,
                "model": "toy", "scale": "1", "prompts": "a shape", "classifier_target": "color=red",
                "classifier_with": value}  # fmt: skip

    path = tmp_path / "transfer.csv"
    write_results(path, [row(50, "", "0.70")])  # as an earlier version wrote it
    write_results(path, [row(50, "0", "0.72")])
    write_results(path, [row(4, "0", "0.75")])
    write_results(path, [row(50, "100", "0.68")])
    write_results(path, [row(50, "0", "0.72")])  # the same run again: replaced, moved to the end
    assert [(r["n"], r["seed"], r["classifier_with"]) for r in _rows(path)] == [
        ("4", "0", "0.75"), ("50", "100", "0.68"), ("50", "0", "0.72")
    ]  # fmt: skip


def test_a_missing_clip_model_is_named_by_the_preflight(cli, tiny_pairs, tmp_path, lora_file, monkeypatch):
    """transfer-lora's CLIP model was found missing only once its images were to be scored (a minute in)."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))  # an empty cache
    from diversity_cli.commands import checks

    seen = []
    monkeypatch.setattr(checks, "schedules_set", lambda *args, **_: seen.append(args))  # the preflight's last step
    code, _, err = cli("transfer-lora", "model=tiny_sd", f"adapter={lora_file}", "concept=a", "prompt=a", "n=1",
                       f"out={tmp_path / 'run'}")  # fmt: skip
    assert code == 2 and "CLIP model openai/clip-vit-large-patch14" in err and "clip_model=null" in err, err
    assert len(err.strip().splitlines()) == 1 and not seen and not (tmp_path / "run").exists()


def test_without_a_prompt_it_takes_the_pairs_default_prompt(cli, tiny_pairs, tmp_path):
    """The adapter and prompts are checked before the preflight, after the pair's defaults fill the prompt."""
    lora = save_random_lora(tiny_pairs("toy"), tmp_path / "red")
    out = tmp_path / "run"
    code, _, err = cli("transfer-lora", "model=toy", "concept=red", "n=1", f"adapter={lora.parent}", f"out={out}")
    assert code == 0, err
    assert {row["prompts"] for row in _rows(out / "transfer.csv")} == {"a shape"}


def test_direction_both_asks_for_the_concept_a_bare_reverse_adapter_does_not_record(cli, tiny_pairs, tmp_path):
    """A reverse adapter with no train-lora record was scored toward the forward adapter's concept without a word
    (a size slider counted as `color=red`)."""
    forward = save_random_lora(tiny_pairs("toy"), tmp_path / "red")
    (forward.parent / "adapter.json").write_text(json.dumps({"name": "red", "concept": "red", "trained_on": "base"}))
    reverse = save_random_lora(tiny_pairs("toy"), tmp_path / "hub", seed=1)  # no adapter.json
    args = ("transfer-lora", "model=toy", "prompt=a shape", "direction=both", "n=1", "grid_seeds=0")
    out = tmp_path / "run"
    code, _, err = cli(*args, f"adapter={forward.parent}", f"reverse_adapter={reverse.parent}", f"out={out}")
    assert code == 2 and "hub records no concept (adapter.json) and the other adapter records 'red'" in err, err
    assert not out.exists()


def test_an_adapter_recorded_on_another_pairs_base_is_refused_before_the_pair_loads(cli, tiny_pairs, tmp_path):
    """adapter.json's `model`: a tiny_sd adapter given to the toy pair is one line naming the pair it was trained on
    (it was a size-mismatch dump once the toy loaded); pairs that share a base take each other's adapters."""
    from diversity_cli.core.config import compose, pair_config
    from diversity_cli.experiments.transfer import refuse_other_base

    lora = save_random_lora(tiny_pairs("tiny_sd"), tmp_path / "sd_red")
    (lora.parent / "adapter.json").write_text(json.dumps({"concept": "red", "model": "tiny_sd", "trained_on": "base"}))
    out = tmp_path / "run"
    code, _, err = cli("transfer-lora", "model=toy", f"adapter={lora.parent}", "prompt=a shape", f"out={out}")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert "was trained on model=tiny_sd's base (adapter.json), not model=toy's: give model=tiny_sd" in err, err
    assert not out.exists()

    adapter = read_adapter(str(lora.parent))
    refuse_other_base(adapter, pair_config("tiny_sd"), "adapter")  # its own pair
    shared = replace(adapter, meta={**adapter.meta, "model": "toy"})
    refuse_other_base(shared, compose("generate", ["model=toy_dpdmd"]).model, "adapter")  # toy's base and components
    with pytest.raises(UserError, match="trained on model=toy's base"):
        refuse_other_base(shared, pair_config("tiny_sdxl"), "adapter")
