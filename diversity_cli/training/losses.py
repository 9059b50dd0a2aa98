"""The distillation losses as plain functions of tensors (no networks), so their gradients can be checked.

Notation: x = the student's clean-sample estimate x0_student (B, C, H, W); x̂0_real and x̂0_fake are the teacher's
(at CFG) and the fake-score network's x0 predictions for x noised to a random level t.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def dmd_gradient(x0_student: torch.Tensor, x0_real: torch.Tensor, x0_fake: torch.Tensor) -> torch.Tensor:
    """DMD2's generator gradient, per sample b:

        g_b = (x̂0_fake,b − x̂0_real,b) / mean_{c,h,w} |x_b − x̂0_real,b|

    i.e. the difference of the fake and real scores in x0 form, normalised by the sample's mean distance to the
    teacher's estimate (DMD2, `sd_guidance.compute_distribution_matching_loss`). Non-finite entries become 0,
    as there. No gradient flows through it."""
    with torch.no_grad():
        dims = tuple(range(1, x0_student.ndim))
        normaliser = (x0_student - x0_real).abs().mean(dim=dims, keepdim=True)
        return torch.nan_to_num((x0_fake - x0_real) / normaliser)


def dmd_loss(x0_student: torch.Tensor, gradient: torch.Tensor) -> torch.Tensor:
    """The surrogate whose autograd gradient is the DMD gradient:

        L = ½ · mean (x − sg(x − g))²   ⇒   ∂L/∂x = g / N,   N = x.numel()

    `sg` is stop-gradient. The mean reduction (not a sum) is DMD2's, which keeps `lambda_div` of DP-DMD on its
    published scale; Adam-type optimisers do not see the constant 1/N."""
    target = (x0_student - gradient).detach()
    return 0.5 * F.mse_loss(x0_student.float(), target.float(), reduction="mean")


def fake_score_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The fake-score network's denoising loss: mean (output − target)² on detached student samples noised to
    t ~ U{0, …, T−1}, the target in the network's own parameterisation (ε for DMD2's `compute_loss_fake`)."""
    return F.mse_loss(prediction.float(), target.float(), reduction="mean")


def first_step_loss(x0_first: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """DP-DMD's diversity term for diffusion backbones: mean (x0_first − sg(x̂0_anchor))², where x0_first is the
    student's first-step clean estimate from pure noise z and x̂0_anchor the teacher's x0 prediction after
    `anchor_k` steps of its deterministic ODE from the same z (see `generator.teacher_anchor`)."""
    return F.mse_loss(x0_first.float(), target.detach().float(), reduction="mean")


@torch.no_grad()
def constant_predictor_floor(target: torch.Tensor) -> torch.Tensor | None:
    """The `first_step_loss` of the best constant first step: one image, the batch's mean anchor, for every prompt
    and noise of the batch. Estimated without bias (the per-element variance over the batch, n - 1 denominator);
    None for a batch of one. At this floor the student's first step is a constant; below it the step varies with
    its prompt, its noise or both, and the floor does not tell which (the anchors of a batch of mixed prompts
    differ by prompt alone): the diversity of the student's samples does."""
    if target.shape[0] < 2:
        return None
    return target.float().var(dim=0, unbiased=True).mean()


def gan_generator_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    """DMD2's GAN term for the generator, non-saturating: mean softplus(−D(x_fake)). It falls as the discriminator
    takes the student's samples for real scenes."""
    return F.softplus(-fake_logits.float()).mean()


def gan_discriminator_loss(
    real_logits: torch.Tensor, fake_logits: torch.Tensor, wrong_logits: torch.Tensor | None = None
) -> torch.Tensor:
    """The discriminator's logistic loss: mean softplus(−D(x_real)) + mean softplus(D(x_fake)); log 4 ≈ 1.386 when
    it cannot tell them apart (logits 0). With `wrong_logits` (real scenes under captions that contradict them) the
    matching-aware form of GAN-INT-CLS (Reed et al. 2016): the two kinds of negative share the second term equally."""
    negative = F.softplus(fake_logits.float()).mean()
    if wrong_logits is not None and wrong_logits.numel():
        negative = 0.5 * (negative + F.softplus(wrong_logits.float()).mean())
    return F.softplus(-real_logits.float()).mean() + negative
