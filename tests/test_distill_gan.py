"""`distill gan.weight=W`: DMD2's GAN term. Its losses at chance and their gradients, which networks each one trains,
that a toy run logs it, checkpoints its head and resumes exactly, and that runs without it keep their fingerprint."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
from omegaconf import open_dict
from safetensors.torch import load_file

from diversity_cli.core.config import compose
from diversity_cli.models import tiny
from diversity_cli.models.pair import concat_kwargs, take_kwargs
from diversity_cli.toy.data import generate_dataset, parse_prompt
from diversity_cli.training.discriminator import build_head
from diversity_cli.training.losses import gan_discriminator_loss, gan_generator_loss
from diversity_cli.training.objective import Distiller, DistillSettings
from diversity_cli.training.real_scenes import contradicting
from diversity_cli.training.state import fingerprint

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = ["a red circle", "two blue squares"]


def test_gan_losses_at_chance_and_the_direction_they_push():
    zero = torch.zeros(4)
    assert gan_generator_loss(zero).item() == pytest.approx(math.log(2))
    assert gan_discriminator_loss(zero, zero).item() == pytest.approx(math.log(4))
    logits = torch.zeros(4, requires_grad=True)
    (grad,) = torch.autograd.grad(gan_generator_loss(logits), logits)
    assert (grad < 0).all()  # the generator lowers its loss by looking more real
    real, fake = torch.zeros(4, requires_grad=True), torch.zeros(4, requires_grad=True)
    d_real, d_fake = torch.autograd.grad(gan_discriminator_loss(real, fake), (real, fake))
    assert (d_real < 0).all() and (d_fake > 0).all()  # real logits pushed up, the student's down
    # Matching-aware: a real scene under a wrong caption is a negative, sharing the negatives' half with the fakes.
    assert gan_discriminator_loss(zero, zero, zero).item() == pytest.approx(math.log(4))
    wrong = torch.zeros(2, requires_grad=True)
    d_fake, d_wrong = torch.autograd.grad(gan_discriminator_loss(zero, fake, wrong), (fake, wrong))
    assert (d_wrong > 0).all() and d_fake.sum() == pytest.approx(d_wrong.sum())


def test_a_wrong_caption_contradicts_its_scene_and_a_caption_that_fits_every_scene_is_never_one():
    data = generate_dataset(64, seed=3)
    wrong = contradicting(data)
    assert sum(j is not None for j in wrong) > 48
    for i, j in enumerate(wrong):
        if j is not None:
            named = parse_prompt(data.captions[j])
            assert any(int(data.labels[f][i]) != v for f, v in named.items()), (data.captions[j], i)
            assert named  # "a shape" names nothing and fits every scene
    data.captions[:] = ["a shape"] * len(data)
    assert contradicting(data) == [None] * len(data)


def _distiller(pair, weight: float) -> Distiller:
    settings = DistillSettings(
        method="dmd",
        student_timesteps=[999, 749, 499, 249],
        teacher_guidance=pair.base.guidance,
        gan_weight=weight,
        gan_discriminator_weight=1e-2,
    )
    teacher = pair.base.network
    fake = Distiller.copy_of(tiny.build_network("sd", seed=1))
    head = build_head(fake, torch.zeros(1, *pair.latent_shape), pair.encode(PROMPTS[:1]).cond, seed=0)
    return Distiller(teacher, Distiller.copy_of(teacher), fake, dict(pair.base.scheduler.config), settings, head)


def _grads(loss: torch.Tensor, network: torch.nn.Module) -> list[torch.Tensor | None]:
    return list(torch.autograd.grad(loss, list(network.parameters()), retain_graph=True, allow_unused=True))


def _moved(grads: list[torch.Tensor | None]) -> bool:
    return any(g is not None and g.abs().sum() > 0 for g in grads)


def test_the_gan_term_joins_the_generator_loss_and_each_loss_trains_its_own_networks(tiny_pairs):
    pair = tiny_pairs("tiny_sd")
    distiller = _distiller(pair, weight=0.5)
    cond = pair.encode(PROMPTS)
    noise = torch.randn(2, *pair.latent_shape, generator=torch.Generator().manual_seed(0))
    out = distiller.generator_losses(noise, cond, torch.Generator().manual_seed(1), step_index=1)
    assert out.gan is not None and math.isfinite(out.gan.item())
    torch.testing.assert_close(out.total, out.dmd + 0.5 * out.gan)
    assert _moved(_grads(out.gan, distiller.student))  # through the fake score's backbone and the head

    real = torch.randn(2, *pair.latent_shape, generator=torch.Generator().manual_seed(2))
    samples = distiller.student_sample(noise, cond, torch.Generator().manual_seed(3))

    def disc(wrong=None):
        return distiller.discriminator_loss(
            samples, cond.cond, real, cond.cond, torch.Generator().manual_seed(4), wrong
        )

    loss = disc()
    assert _moved(_grads(loss, distiller.head)) and _moved(_grads(loss, distiller.fake))
    assert not _moved(_grads(loss, distiller.student))  # the student's samples come in detached
    torch.testing.assert_close(disc([None, None]), loss)  # no scene has a wrong caption: the plain loss
    # Each real scene under the other's caption joins the negatives, in the same pass as the rest.
    swapped = concat_kwargs([cond.cond, cond.cond, take_kwargs(cond.cond, [1, 0])])
    with torch.no_grad():
        logits = distiller.logits(torch.cat([real, samples, real]), swapped, torch.Generator().manual_seed(4))
    expected = gan_discriminator_loss(logits[:2], logits[2:4], logits[4:])
    torch.testing.assert_close(disc([1, 0]).detach(), expected)
    assert not torch.allclose(expected, gan_discriminator_loss(logits[:2], logits[2:4]))

    off = _distiller(pair, weight=0.0)
    assert off.generator_losses(noise, cond, torch.Generator().manual_seed(1), step_index=1).gan is None


def _log(out: Path) -> list[dict[str, str]]:
    with (out / "log.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def _tensors(path: Path) -> torch.Tensor:
    return torch.cat([v.flatten() for v in load_file(path).values()])


def test_a_toy_run_logs_the_gan_term_checkpoints_its_head_and_resumes_exactly(cli, tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a red circle\ntwo triangles\n")
    args = ("distill", "model=toy", f"prompts={prompts}", "device=cpu", "batch_size=2")
    args += ("fake_updates_per_generator_update=1", "gan.mismatched=true", "gan.weight=0.5")
    resumed, straight, plain = tmp_path / "resumed", tmp_path / "straight", tmp_path / "plain"
    assert cli(*args, f"out={resumed}", "iterations=2")[0] == 0
    code, _, err = cli(*args, f"out={resumed}", "iterations=3")
    assert code == 0, err
    assert cli(*args, f"out={straight}", "iterations=3")[0] == 0
    assert cli(*args[:-2], f"out={plain}", "iterations=3")[0] == 0  # no GAN term, nor its settings

    rows = _log(resumed)
    assert [r["iteration"] for r in rows] == ["1", "2", "3"]
    for row in rows:
        assert math.isfinite(float(row["gan_loss"])) and 0 < float(row["discriminator_loss"]) < 3
        expected = float(row["dmd_loss"]) + 0.5 * float(row["gan_loss"])
        assert float(row["generator_loss"]) == pytest.approx(expected, rel=1e-4)
    assert {r["gan_loss"] for r in _log(plain)} == {""}
    drop = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert drop(rows) == drop(_log(straight))

    student = "student/diffusion_pytorch_model.safetensors"
    assert torch.equal(_tensors(resumed / student), _tensors(straight / student))
    head = "checkpoints/iter_000003/model_2.safetensors"  # accelerate's third prepared model: the head
    assert torch.equal(_tensors(resumed / head), _tensors(straight / head))
    assert not (plain / head).exists()
    assert (
        "with DMD2's GAN term (generator weight 0.5, discriminator weight 0.01, matching-aware"
        in (resumed / "README.md").read_text()
    )
    assert "no GAN term" in (plain / "README.md").read_text()
    assert not torch.equal(_tensors(resumed / student), _tensors(plain / student))  # the term changed training


def test_a_run_without_the_gan_term_keeps_its_fingerprint():
    off = compose("distill", ["model=toy", "gan.weight=0"])
    older = compose("distill", ["model=toy"])
    with open_dict(older):
        del older["gan"]  # a run directory from before the GAN term existed
    assert fingerprint(off) == fingerprint(older)
    assert fingerprint(compose("distill", ["model=toy", "gan.weight=5e-3"])) != fingerprint(off)
