"""The DMD and DP-DMD objectives over the three networks: frozen teacher, trainable student and fake score.

Per generator update (`Distiller.generator_losses`):
- DMD (DMD2's, its GAN term below). Draw z ~ N(0, I) and a step i ~ U{0, …, n−1} of the student's n-step schedule;
  run the student without gradients from z to x_{t_i} (backward simulation) and step i with gradients, giving
  x = x0_student. Noise it, x_t = √ᾱ_t·x + √(1−ᾱ_t)·ε with t ~ U{⌊0.02T⌋, …, ⌊0.98T⌋}; the teacher at CFG gives
  x̂0_real, the fake-score network (conditional, no CFG) gives x̂0_fake; loss = `losses.dmd_loss` with
  `losses.dmd_gradient` (∂L/∂x = (x̂0_fake − x̂0_real) / mean|x − x̂0_real| / N).
- DP-DMD. The student's first step from z at t_0 (with gradients) gives x0_first, trained by
  lambda_div · `losses.first_step_loss` towards the teacher's ODE anchor from the same z (`teacher_anchor`).
  The DMD loss trains the remaining steps only: i ~ U{1, …, n−1}, and the rollout to step i starts from the
  first step's re-noised output with its gradient stopped, so the DMD term never reaches x0_first
  (`stop_gradient=False` is the paper's ablation: steps 1..i−1 then run with gradients from x0_first on).
  total = L_DMD + lambda_div · L_first.

GAN term (DMD2's, `gan_weight` > 0): the same x0_student, noised to t ~ U{0, …, T−1}, goes through the fake
score's bottleneck and a classifier head (`discriminator`); the generator adds gan_weight ·
`losses.gan_generator_loss`. With it off (gan_weight = 0) nothing of it is built or drawn.

Per fake-score update (`Distiller.fake_loss`): a fresh student sample from the same step distribution, without
gradients, noised to t ~ U{0, …, T−1}; the plain denoising loss of the teacher's own parameterisation
(`losses.fake_score_loss`): ε-MSE for ε-prediction teachers (DMD2's), v-MSE for v-prediction ones, whose
ε-prediction carries no signal at zero terminal SNR (at ᾱ = 0 the input is the noise itself). With the GAN term
the fake score and its head also learn to tell real scenes from the student's samples, both noised the same way:
`gan_discriminator_weight` · `losses.gan_discriminator_loss` (`Distiller.discriminator_loss`); with
`gan_mismatched`, real scenes under captions that contradict them are negatives too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from diffusers import DDPMScheduler

from ..models.pair import Conditioning, concat_kwargs, take_kwargs
from ..models.schedulers import plain_config
from ..sampling.denoiser import denoising_target
from . import losses
from .discriminator import bottleneck
from .generator import StudentSampler, teacher_anchor, teacher_ode_scheduler
from .predict import alpha_bar, guided_output, network_output, to_x0


@dataclass
class DistillSettings:
    method: str  # "dmd" or "dp_dmd"
    student_timesteps: list[int]
    teacher_guidance: float
    t_range: tuple[float, float] = (0.02, 0.98)
    # DP-DMD only
    anchor_k: int = 0
    lambda_div: float = 0.0
    stop_gradient: bool = True
    ode_steps: int = 0
    ode_guidance: float = 0.0
    ode_overrides: dict | None = None
    # DMD2's GAN term (0: off)
    gan_weight: float = 0.0
    gan_discriminator_weight: float = 0.0
    gan_mismatched: bool = False


@dataclass
class GeneratorLosses:
    total: torch.Tensor
    dmd: torch.Tensor
    first_step: torch.Tensor | None  # DP-DMD only
    first_step_floor: torch.Tensor | None  # DP-DMD, batch >= 2: first_step's value for the best constant prediction
    first_x0: torch.Tensor | None  # DP-DMD: the student's first-step output (graph attached), for gradient checks
    x0_student: torch.Tensor  # the output the DMD term trained (graph attached)
    step_index: int
    gan: torch.Tensor | None = None  # the GAN term, when on


class Distiller:
    """Holds the networks and the schedules; every random draw comes from the `generator` passed in."""

    def __init__(
        self,
        teacher: torch.nn.Module,
        student: torch.nn.Module,
        fake: torch.nn.Module,
        scheduler_config: dict,
        settings: DistillSettings,
        head: torch.nn.Module | None = None,
    ):
        self.teacher, self.student, self.fake = teacher, student, fake
        self.head = head  # the discriminator's classifier head on the fake score's bottleneck (GAN term only)
        self.settings = settings
        scheduler_config = plain_config(scheduler_config)
        self.prediction_type = scheduler_config["prediction_type"]
        # The teacher's training noise schedule: forward noising (add_noise) and ᾱ_t for x0/ε conversions.
        self.noise_schedule = DDPMScheduler.from_config(scheduler_config)
        self.alphas_cumprod = self.noise_schedule.alphas_cumprod
        self.num_train_timesteps = int(self.noise_schedule.config.num_train_timesteps)
        self.sampler = StudentSampler(scheduler_config, settings.student_timesteps)
        if settings.method == "dp_dmd":
            self.ode = teacher_ode_scheduler(scheduler_config, settings.ode_overrides or {})

    @staticmethod
    def copy_of(teacher: torch.nn.Module) -> torch.nn.Module:
        """A trainable float32 copy of the teacher (student and fake score start from it, as in DMD2)."""
        network = copy.deepcopy(teacher).to(torch.float32)
        network.requires_grad_(True)
        return network.train()

    # -- random draws -----------------------------------------------------------------------------------------
    def dmd_steps(self) -> range:
        """The student steps the DMD term trains (and the fake score learns the outputs of)."""
        return range(1 if self.settings.method == "dp_dmd" else 0, len(self.sampler))

    def draw_step(self, generator: torch.Generator) -> int:
        steps = self.dmd_steps()
        return steps[int(torch.randint(len(steps), (1,), generator=generator))]

    def draw_noise(self, shape: tuple[int, ...], device: torch.device, generator: torch.Generator) -> torch.Tensor:
        return torch.randn(shape, generator=generator).to(device)

    def draw_timesteps(self, batch: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
        lo, hi = int(low * self.num_train_timesteps), int(high * self.num_train_timesteps)
        return torch.randint(lo, min(hi + 1, self.num_train_timesteps), (batch,), generator=generator)

    # -- generator --------------------------------------------------------------------------------------------
    def generator_losses(
        self,
        noise: torch.Tensor,
        conditioning: Conditioning,
        generator: torch.Generator,
        step_index: int | None = None,
    ) -> GeneratorLosses:
        """The generator's losses for one batch of pure noise (see the module docstring). `step_index` fixes the
        step the DMD term trains (drawn at random when None)."""
        s = self.settings
        index = self.draw_step(generator) if step_index is None else int(step_index)
        if index not in self.dmd_steps():
            raise ValueError(f"step_index {index} is not trained by the DMD term of {s.method}")
        first_x0 = first = floor = None
        x = noise
        if s.method == "dp_dmd":
            first_x0, x = self.sampler.step(self.student, noise, 0, conditioning, generator)
            target = teacher_anchor(
                self.teacher, self.ode, s.ode_steps, s.anchor_k, noise, conditioning, s.ode_guidance
            )
            first = losses.first_step_loss(first_x0, target)
            floor = losses.constant_predictor_floor(target)
            if s.stop_gradient:
                x = x.detach()  # the DMD term must not reach the first step's output
            with torch.set_grad_enabled(not s.stop_gradient and torch.is_grad_enabled()):
                for i in range(1, index):
                    _, x = self.sampler.step(self.student, x, i, conditioning, generator)
        else:
            x = self.sampler.run(self.student, noise, 0, index, conditioning, generator)
        x0_student, _ = self.sampler.step(self.student, x, index, conditioning, generator)
        dmd = self.dmd_term(x0_student, conditioning, generator)
        total = dmd if first is None else dmd + s.lambda_div * first
        gan = None
        if s.gan_weight > 0:
            gan = losses.gan_generator_loss(self.logits(x0_student, conditioning.cond, generator))
            total = total + s.gan_weight * gan
        return GeneratorLosses(total, dmd, first, floor, first_x0, x0_student, index, gan)

    def dmd_term(
        self,
        x0_student: torch.Tensor,
        conditioning: Conditioning,
        generator: torch.Generator | None = None,
        t: torch.Tensor | None = None,
        eps: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The DMD surrogate loss for `x0_student` (graph attached); `t` and `eps` are drawn when not given."""
        if t is None:
            t = self.draw_timesteps(x0_student.shape[0], *self.settings.t_range, generator)
        if eps is None:
            eps = self.draw_noise(tuple(x0_student.shape), x0_student.device, generator)
        x0_real, x0_fake = self.score_estimates(x0_student.detach(), conditioning, t, eps)
        return losses.dmd_loss(x0_student, losses.dmd_gradient(x0_student.detach(), x0_real, x0_fake))

    @torch.no_grad()
    def score_estimates(
        self, x0: torch.Tensor, conditioning: Conditioning, t: torch.Tensor, eps: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(x̂0_real, x̂0_fake) for `x0` noised with `eps` to timesteps `t`."""
        t = t.to(x0.device)
        noisy = self.noise_schedule.add_noise(x0, eps, t)
        real = guided_output(self.teacher, noisy, t, conditioning, self.settings.teacher_guidance)
        fake = network_output(self.fake, noisy, t, conditioning.cond)
        x0_real = to_x0(real, noisy, t, self.alphas_cumprod, self.prediction_type)
        x0_fake = to_x0(fake, noisy, t, self.alphas_cumprod, self.prediction_type)
        return x0_real, x0_fake

    # -- discriminator ----------------------------------------------------------------------------------------
    def logits(self, x0: torch.Tensor, kwargs: dict, generator: torch.Generator) -> torch.Tensor:
        """The discriminator's logits for clean samples `x0` (graph kept), each noised to its own t ~ U{0, …, T−1}."""
        t = self.draw_timesteps(x0.shape[0], 0.0, 1.0, generator).to(x0.device)
        eps = self.draw_noise(tuple(x0.shape), x0.device, generator)
        noisy = self.noise_schedule.add_noise(x0, eps, t)
        return self.head(bottleneck(self.fake, noisy, t, kwargs))

    def discriminator_loss(
        self,
        fake_x0: torch.Tensor,
        fake_kwargs: dict,
        real_x0: torch.Tensor,
        real_kwargs: dict,
        generator: torch.Generator,
        wrong: list[int | None] | None = None,
    ) -> torch.Tensor:
        """The discriminator's loss (unweighted) on detached student samples and real latents, one pass for all.
        `wrong[i]`, when given, is the row of `real_kwargs` whose caption contradicts real scene i: those pairs are
        negatives too (the matching-aware discriminator)."""
        pairs = [(i, j) for i, j in enumerate(wrong or []) if j is not None]
        wrong_x0 = real_x0[[i for i, _ in pairs]]
        wrong_kwargs = take_kwargs(real_kwargs, [j for _, j in pairs])
        x0 = torch.cat([real_x0.to(fake_x0.dtype), fake_x0.detach(), wrong_x0.to(fake_x0.dtype)])
        logits = self.logits(x0, concat_kwargs([real_kwargs, fake_kwargs, wrong_kwargs]), generator)
        real, fake, mismatched = logits.split([real_x0.shape[0], fake_x0.shape[0], len(pairs)])
        return losses.gan_discriminator_loss(real, fake, mismatched)  # none mismatched: the plain loss

    # -- fake score -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def student_sample(self, noise: torch.Tensor, conditioning: Conditioning, generator: torch.Generator):
        """A detached student output at a random DMD-trained step (backward simulation)."""
        index = self.draw_step(generator)
        x = self.sampler.run(self.student, noise, 0, index, conditioning, generator)
        x0, _ = self.sampler.step(self.student, x, index, conditioning, generator)
        return x0

    def fake_loss(self, x0: torch.Tensor, conditioning: Conditioning, generator: torch.Generator) -> torch.Tensor:
        """Denoising loss of the fake score on detached samples `x0`."""
        x0 = x0.detach()
        t = self.draw_timesteps(x0.shape[0], 0.0, 1.0, generator).to(x0.device)
        eps = self.draw_noise(tuple(x0.shape), x0.device, generator)
        noisy = self.noise_schedule.add_noise(x0, eps, t)
        out = network_output(self.fake, noisy, t, conditioning.cond)
        target = denoising_target(x0, eps, alpha_bar(self.alphas_cumprod, t, x0), self.prediction_type)
        return losses.fake_score_loss(out, target)
