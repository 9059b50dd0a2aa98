"""`diversity-cli train-toy` on tiny sizes (every stage, resume, no-overwrite), and the shipped toy base model."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from diversity_cli.toy import loop
from diversity_cli.toy.data import VOCABULARY
from diversity_cli.toy.features import ASSETS
from diversity_cli.toy.tokenizer import MAX_LENGTH, build_tokenizer

TINY = [
    "data.n_train=64",
    "data.n_heldout=16",
    "vae.channels=[8,8]",
    "vae.norm_groups=4",
    "vae.steps=3",
    "vae.batch_size=4",
    "features.retrain=true",  # the tiny run trains its own feature network (the default copies the shipped one)
    "features.channels=[4,4,4]",
    "features.embed_dim=8",
    "features.steps=3",
    "features.batch_size=4",
    "text_encoder.hidden=16",
    "text_encoder.layers=1",
    "text_encoder.heads=2",
    "unet.channels=[8,16]",
    "unet.norm_groups=4",
    "unet.heads=2",
    "unet.steps=4",
    "unet.batch_size=4",
    "unet.warmup=1",
    "checkpoint_every=2",
    "log_every=1",
    "evaluate.n=2",
    "evaluate.steps=2",
    "evaluate.prompts=[a circle]",
    "device=cpu",
    "threads=1",  # tiny networks gain nothing from a second thread
]


def _log(out: Path, stage: str) -> list[dict[str, str]]:
    with (out / "logs" / f"{stage}.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def _unet_weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "base" / "unet" / "diffusion_pytorch_model.safetensors"))


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One uninterrupted tiny run."""
    from diversity_cli.cli import run

    out = tmp_path_factory.mktemp("toy") / "run"
    assert run(["train-toy", f"out={out}", *TINY]) == 0
    return out


def test_tiny_run_trains_every_stage_and_exports_a_pipeline(finished):
    from diffusers import StableDiffusionPipeline

    for stage, steps in (("vae", 3), ("features", 3), ("unet", 4)):
        rows = _log(finished, stage)
        assert [int(r["step"]) for r in rows] == list(range(1, steps + 1))
        losses = [float(v) for r in rows for k, v in r.items() if k not in ("step", "lr", "seconds")]
        assert all(np.isfinite(losses))
    pipe = StableDiffusionPipeline.from_pretrained(finished / "base")
    assert pipe.safety_checker is None and pipe.tokenizer.model_max_length == MAX_LENGTH
    assert pipe.scheduler.config.beta_schedule == "scaled_linear" and pipe.scheduler.config.beta_end == 0.012
    assert pipe.unet.config.cross_attention_dim == pipe.text_encoder.config.hidden_size == 16
    assert (finished / "features" / "model.safetensors").is_file()
    with (finished / "evaluation.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["prompt"] for r in rows] == ["a circle"] and 0 <= float(rows[0]["mode_coverage"]) <= 1
    card = (finished / "MODEL_CARD.md").read_text()
    assert "diversity-cli train-toy out=" in card and "unet.steps=4" in card


def test_weights_move_in_every_stage(finished):
    from diversity_cli.core.config import compose
    from diversity_cli.toy.architecture import build_vae
    from diversity_cli.toy.features import ToyClassifier

    cfg = compose("train_toy", TINY)
    torch.manual_seed(cfg.seed)  # each stage builds its networks under the run's seed
    vae = build_vae(cfg.vae.channels, cfg.vae.norm_groups, cfg.vae.latent_channels)
    torch.manual_seed(cfg.seed)
    classifier = ToyClassifier(tuple(cfg.features.channels), cfg.features.embed_dim)
    for name, initial in (("vae", vae), ("features", classifier)):
        trained = torch.load(finished / "checkpoints" / f"{name}.pt", weights_only=False)["modules"][name]
        start = initial.state_dict()
        assert trained.keys() == start.keys()
        assert all(trained[k].shape == start[k].shape for k in start)
        for key in (k for k in start if k.endswith("weight")):
            change = (trained[key] - start[key]).abs().max().item()
            assert 0 < change < 0.05, (name, key, change)  # a few optimizer steps away from the seeded start
    # The UNet: its step-4 weights differ from those of the step-2 checkpoint it passed through (see resume test),
    # and its exported (EMA) weights differ from the raw ones.
    raw = torch.load(finished / "checkpoints" / "unet.pt", weights_only=False)["modules"]["unet"]
    exported = _unet_weights(finished)
    assert any(not torch.allclose(raw[k], exported[k]) for k in exported)


def _stopped_at_unet_step_3(error: type[BaseException]):
    """StageRunner.run, raising `error` as the UNet stage is about to take its third step."""
    real_run = loop.StageRunner.run

    def run(self, stage, step_fn):
        def step(i):
            if stage.name == "unet" and i == 2:
                raise error
            return step_fn(i)

        return real_run(self, stage, step)

    return run


def test_killed_run_resumes_to_the_same_weights(finished, tmp_path, monkeypatch):
    from diversity_cli.cli import run

    class Killed(Exception):
        pass

    real_run = loop.StageRunner.run
    out = tmp_path / "run"
    monkeypatch.setattr(loop.StageRunner, "run", _stopped_at_unet_step_3(Killed))
    with pytest.raises(Killed):
        run(["train-toy", f"out={out}", *TINY])
    assert not (out / "base").exists()
    halfway = torch.load(out / "checkpoints" / "unet.pt", weights_only=False)
    assert halfway["step"] == 2
    monkeypatch.setattr(loop.StageRunner, "run", real_run)
    assert run(["train-toy", f"out={out}", *TINY]) == 0
    assert [int(r["step"]) for r in _log(out, "unet")] == [1, 2, 3, 4]
    resumed, uninterrupted = _unet_weights(out), _unet_weights(finished)
    for key, value in uninterrupted.items():
        assert torch.allclose(resumed[key], value, atol=1e-6), key
    final = torch.load(out / "checkpoints" / "unet.pt", weights_only=False)["modules"]["unet"]
    assert any(not torch.equal(final[k], halfway["modules"]["unet"][k]) for k in final)


def test_a_stage_resumed_at_another_thread_count_is_said_and_carded(finished, tmp_path, monkeypatch, cli):
    """train-toy took another threads= on resume without a word, and the card named the last session's count only:
    CPU sums are split by thread, so such weights are not bitwise those of a run at either count."""
    from diversity_cli.cli import run

    assert "(cpu, 1 torch threads)" in (finished / "MODEL_CARD.md").read_text()  # one count: said as before
    real_run = loop.StageRunner.run
    out = tmp_path / "run"
    monkeypatch.setattr(loop.StageRunner, "run", _stopped_at_unet_step_3(KeyboardInterrupt))  # Ctrl-C
    assert run(["train-toy", f"out={out}", *TINY]) != 0
    monkeypatch.setattr(loop.StageRunner, "run", real_run)
    code, stdout, err = cli("train-toy", f"out={out}", *TINY, "threads=2")
    assert code == 0, err
    assert "unet resumes at 2 torch thread(s); its first 2 steps ran at 1" in " ".join((stdout + err).split())
    assert "resuming unet from its checkpoint at step 2 of 4" in stdout + err  # the bar alone began part-way
    card = (out / "MODEL_CARD.md").read_text()
    assert "torch threads per stage: vae 1, features 1, unet 1 and 2; resumed at another count" in card
    assert json.loads((out / "checkpoints" / "unet.done.json").read_text())["threads"] == [1, 2]


def test_refuses_to_overwrite_without_overwrite_true(finished, tmp_path, cli, monkeypatch):
    out = tmp_path / "run"
    shutil.copytree(finished, out)
    code, stdout, _ = cli("train-toy", f"out={out}", *TINY)
    assert code == 0 and "nothing to do" in stdout
    weights = _unet_weights(out)
    trained = datetime(2020, 5, 1, 12, 30, tzinfo=timezone.utc).timestamp()
    os.utime(out / "checkpoints" / "unet.done.json", (trained, trained))
    code, _, err = cli("train-toy", f"out={out}", *TINY, "evaluate.prompts=[a red square]")  # evaluated again
    assert code == 0, err
    # the card's finish is the training's, not the re-evaluation's (it said the time the card was rewritten)
    assert "- finished: 2020-05-01 12:30 UTC; evaluated (this card written) 20" in (out / "MODEL_CARD.md").read_text()
    assert [row["prompt"] for row in csv.DictReader((out / "evaluation.csv").open())] == ["a red square"]
    assert sorted(path.name for path in (out / "samples").iterdir()) == ["00_a_red_square.png"]
    assert "| a red square |" in (out / "MODEL_CARD.md").read_text()
    assert all(torch.equal(weights[key], value) for key, value in _unet_weights(out).items())  # not trained again
    code, stdout, _ = cli("train-toy", f"out={out}", *TINY, "evaluate.prompts=[a red square]")
    assert code == 0 and "nothing to do" in stdout
    from diversity_cli.toy import train as toy_train

    def stopped(*args, **kwargs):  # a re-evaluation stopped half-way (Ctrl-C)
        os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(toy_train, "evaluate_base", stopped)
    code, stdout, err = cli("train-toy", f"out={out}", *TINY, "evaluate.prompts=[a blue square]")
    assert code != 0, stdout + err
    monkeypatch.undo()
    code, stdout, _ = cli("train-toy", f"out={out}", *TINY, "evaluate.prompts=[a red square]")
    assert code == 0 and "nothing to do" not in stdout  # evaluated again, not taken as finished
    assert sorted(path.name for path in (out / "samples").iterdir()) == ["00_a_red_square.png"]
    code, _, err = cli("train-toy", f"out={out}", *TINY, "unet.steps=5")
    assert code == 2 and "other settings (unet.steps)" in err and "overwrite=true" in err, err
    assert "steps set its learning-rate schedule: a finished run cannot be extended" in err  # why, unlike distill
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    code, _, err = cli("train-toy", f"out={stranger}", *TINY)
    assert code == 2 and "holds files that are not a diversity-cli run (first: notes.txt)" in err, err
    assert (stranger / "notes.txt").read_text() == "mine"
    code, _, err = cli("train-toy", f"out={out}", *TINY, "unet.steps=5", "overwrite=true")
    assert code == 0, err
    assert [int(r["step"]) for r in _log(out, "unet")] == [1, 2, 3, 4, 5]


def test_default_run_keeps_the_judge_and_can_reuse_a_vae_and_shift_the_schedule(tmp_path):
    """features.retrain=false (the default) copies the shipped judge byte for byte; vae.reuse skips the VAE stage;
    unet.schedule_shift travels to the exported scheduler, so the base samples on the schedule it learned."""
    from diffusers import DDPMScheduler, StableDiffusionPipeline

    from diversity_cli.cli import run
    from diversity_cli.toy.features import judge_sha256
    from diversity_cli.toy.schedule import noise_schedule

    shipped_vae = ASSETS / "base" / "vae"
    out = tmp_path / "run"
    tiny = [arg for arg in TINY if not arg.startswith(("features.", "vae."))]
    assert run(["train-toy", f"out={out}", *tiny, f"vae.reuse={shipped_vae}", "unet.schedule_shift=0.5"]) == 0
    assert judge_sha256(out / "features") == judge_sha256()
    assert not (out / "logs" / "features.csv").exists() and not (out / "logs" / "vae.csv").exists()
    vae_file = "diffusion_pytorch_model.safetensors"
    exported, shipped = load_file(str(out / "base" / "vae" / vae_file)), load_file(str(shipped_vae / vae_file))
    assert exported.keys() == shipped.keys() and all(torch.equal(exported[k], shipped[k]) for k in shipped)
    pipe = StableDiffusionPipeline.from_pretrained(out / "base")
    trained = noise_schedule(0.5).alphas_cumprod
    assert torch.equal(pipe.scheduler.alphas_cumprod, trained)
    plain = DDPMScheduler.from_config(pipe.scheduler.config, trained_betas=None).alphas_cumprod
    assert not torch.allclose(trained, plain)
    card = (out / "MODEL_CARD.md").read_text()
    assert "the shipped judge, unchanged" in card and "VAE reused from" in card and "shifted by 0.5" in card


def test_continued_training_to_zero_terminal_snr_and_v_prediction(finished, tmp_path):
    """The v3 base's recipe in small: continue a trained base on a shifted schedule rescaled to zero terminal SNR,
    predicting v. The exported scheduler carries both, every sampler reads them, and the toolkit's own sampler
    starts from pure noise at t=999 (ᾱ = 0) and returns finite images."""
    from diffusers import StableDiffusionPipeline

    from diversity_cli.cli import run
    from diversity_cli.models.loading import load_pair
    from diversity_cli.toy.evaluate import pair_config, sample_base

    out = tmp_path / "v"
    settings = ["unet.prediction_type=v_prediction", "unet.zero_terminal_snr=true", "unet.schedule_shift=0.5"]
    assert run(["train-toy", f"out={out}", *TINY, f"unet.init_from={finished / 'base'}", *settings]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(out / "base")
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    assert float(pipe.scheduler.alphas_cumprod[-1]) == 0.0
    card = (out / "MODEL_CARD.md").read_text()
    assert "v-prediction" in card and "zero terminal SNR" in card and "continued from" in card
    pair = load_pair(pair_config(out / "base", 2, 4.0), torch.device("cpu"), torch.float32)
    images = sample_base(pair, "a circle", 2, 0)
    assert torch.isfinite(images).all()
    rows = list(csv.DictReader((out / "evaluation.csv").open(newline="")))
    assert rows and all(0 <= float(r["adherence"]) <= 1 for r in rows)


def test_continued_training_with_coordinate_planes(finished, tmp_path):
    """unet.coordinates=true continues a plain base as a CoordUNet: it starts from the plain weights (zero weight
    on the planes), exports a pipeline folder diffusers loads on its own, and the toolkit's loader picks the class
    from the folder, so generate and distill sample with the planes."""
    from diffusers import StableDiffusionPipeline

    from diversity_cli.cli import run
    from diversity_cli.core.config import compose
    from diversity_cli.models.coord_unet import CoordUNet2DConditionModel
    from diversity_cli.models.loading import load_pair
    from diversity_cli.toy.evaluate import pair_config
    from diversity_cli.toy.train import training_settings

    out = tmp_path / "xy"
    assert run(["train-toy", f"out={out}", *TINY, f"unet.init_from={finished / 'base'}", "unet.coordinates=true"]) == 0
    pipe = StableDiffusionPipeline.from_pretrained(out / "base")
    assert isinstance(pipe.unet, CoordUNet2DConditionModel)
    planes = pipe.unet.conv_in.weight[:, -2:]
    assert planes.abs().max() > 0  # trained from zero: the steps moved them
    plain = _unet_weights(finished)["conv_in.weight"]
    assert pipe.unet.conv_in.weight.shape[1] == plain.shape[1] + 2
    pair = load_pair(pair_config(out / "base", 2, 4.0), torch.device("cpu"), torch.float32)
    assert isinstance(pair.base.network, CoordUNet2DConditionModel)
    # the option joins a run's settings only when set, so runs made before it existed still resume
    defaults = training_settings(compose("train_toy", TINY))["unet"]
    assert not {"coordinates", "late_timestep_multiplier", "late_timestep_portion"} & set(defaults)
    assert training_settings(compose("train_toy", [*TINY, "unet.coordinates=true"]))["unet"]["coordinates"] is True


def test_zero_terminal_snr_without_v_prediction_is_refused_before_anything_is_written(cli, tmp_path):
    code, _, err = cli("train-toy", f"out={tmp_path / 'x'}", *TINY, "unet.zero_terminal_snr=true")
    assert code == 2 and "needs unet.prediction_type=v_prediction" in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_bad_settings_are_one_line(cli, tmp_path):
    code, _, err = cli("train-toy", f"out={tmp_path / 'x'}", "unet.steps=0")
    assert code == 2 and "unet.steps=0" in err and "Traceback" not in err


def test_tokenizer_gives_each_word_one_token(tmp_path):
    tokenizer = build_tokenizer(tmp_path)
    assert tokenizer.model_max_length == MAX_LENGTH
    for word in VOCABULARY:
        assert len(tokenizer(word, add_special_tokens=False).input_ids) == 1, word
    ids = tokenizer("two small red circles on the left on a dark background").input_ids
    assert len(ids) == 13 <= MAX_LENGTH  # the longest toy caption, with its start and end tokens


# ---------------------------------------------------------------- the shipped toy base


def test_shipped_assets_fit_the_size_budget():
    # The base, both students and the feature network: 20 MB at most (issue 3).
    for part in ("base/unet", "dmd_student", "dp_dmd_student", "features"):
        assert any((ASSETS / part).glob("*.safetensors")), part
    total = sum(path.stat().st_size for path in ASSETS.rglob("*") if path.is_file())
    assert total < 20e6
    assert (ASSETS / "MODEL_CARD.md").is_file()


def test_shipped_base_generates_through_the_cli(cli, tmp_path, monkeypatch):
    """The toolkit's loader takes the shipped folder as a local model pair; its samples follow the prompt."""
    from diversity_cli.core.config import conf_dir
    from diversity_cli.core.rundir import RunDir
    from diversity_cli.toy.features import load_classifier, prompt_adherence

    conf = tmp_path / "conf"
    shutil.copytree(conf_dir(), conf)
    base = (ASSETS / "base").resolve()
    spec = (
        f"{{label: toy base, network: {{path: {base / 'unet'}}}, "
        f"scheduler: {{repo: {base}, class: DDIMScheduler, overrides: {{timestep_spacing: trailing, "
        "set_alpha_to_one: true}}, "
        "steps: 25, guidance: 4.0}"
    )
    (conf / "model" / "toy_check.yaml").write_text(
        f"name: toy_check\nfamily: sd\nresolution: 32\ndtype: float32\ncomponents: {{path: {base}}}\n"
        f"base: {spec}\ndistilled: {spec}\n"
    )
    monkeypatch.setenv("DIVERSITY_CLI_CONF", str(conf))
    out = tmp_path / "samples"
    code, _, err = cli("generate", "model=toy_check", "method=base", "prompt=a red shape", "n=6", f"out={out}")
    assert code == 0, err
    rows = RunDir(out).read_samples()
    assert len(rows) == 6
    from PIL import Image

    images = torch.stack(
        [torch.from_numpy(np.array(Image.open(out / r["path"]))).permute(2, 0, 1).float() / 255 for r in rows]
    )
    assert images.shape == (6, 3, 32, 32)
    assert prompt_adherence(images, "a red shape", load_classifier()) >= 5 / 6
    assert images.std(dim=0).mean() > 0.05  # six seeds, six different images


def test_late_timestep_bias_draws_the_noisiest_timesteps_more_often():
    from diversity_cli.toy.stages import sample_timesteps

    uniform = sample_timesteps(4096, 1000, 0.2, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(uniform, torch.randint(0, 1000, (4096,), generator=torch.Generator().manual_seed(3)))
    biased = sample_timesteps(20000, 1000, 0.2, 6.0, torch.Generator().manual_seed(3))
    # 200 timesteps at weight 6 against 800 at weight 1: 1200 / 2000 of the draws
    assert abs((biased >= 800).float().mean().item() - 0.6) < 0.02
    assert biased.min() >= 0 and biased.max() <= 999
    assert abs((uniform >= 800).float().mean().item() - 0.2) < 0.03


def test_the_cards_command_leaves_out_overwrite():
    """The model card's command reproduces the run; with overwrite=true, pasted back into its out= it deleted it."""
    from diversity_cli.core.config import compose
    from diversity_cli.toy.train import command_line

    assert command_line(compose("train_toy", ["overwrite=true", "seed=3"])) == "diversity-cli train-toy seed=3"
