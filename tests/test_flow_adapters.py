"""transfer-lora on an adapter-distilled pair (tiny_qwen: one network, the student its distillation LoRA): the
transferred adapter is stacked on the network beside the distillation adapter, on for both roles, while the
distillation adapter stays on for the student only; leaving removes the transferred adapter alone."""

from __future__ import annotations

import copy
import csv
from pathlib import Path

import torch

from diversity_cli.core.config import compose
from diversity_cli.models.adapter_pair import ADAPTER
from diversity_cli.models.adapters import ADAPTER_NAME, applied, read_adapter
from diversity_cli.models.loading import load_pair
from diversity_cli.sampling.plan import make_plan
from diversity_cli.sampling.sampler import sample_latents

PROMPT = "a red circle"


def _latents(pair, method: str, **knobs) -> torch.Tensor:
    plan = make_plan(pair, method, **knobs)
    return sample_latents(plan, pair.encode([PROMPT]), [0], pair.latent_shape, pair.device)


def save_qwen_lora(pair, folder: Path) -> Path:
    """A random LoRA for the Qwen-Image transformer, trained on nothing, saved by the pipeline's save_lora_weights
    (peft on a copy of the network; only the new adapter's weights are written)."""
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict

    network = copy.deepcopy(pair.base.network)
    config = LoraConfig(r=2, lora_alpha=2, target_modules=["to_q", "to_k", "to_v", "to_out.0"])
    network.add_adapter(config, adapter_name="source")
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in network.named_parameters():
            if "lora_" in name and ".source." in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    weights = get_peft_model_state_dict(network, adapter_name="source")
    type(pair.pipe).save_lora_weights(str(folder), transformer_lora_layers=weights)
    return folder / "pytorch_lora_weights.safetensors"


def test_a_transferred_lora_stacks_on_the_distillation_adapter(tiny_pairs, tmp_path):
    pair = tiny_pairs("tiny_qwen")
    network = pair.base.network
    assert network is pair.distilled.network and set(network.peft_config) == {ADAPTER}
    adapter = read_adapter(str(save_qwen_lora(pair, tmp_path)))
    before = {k: v.detach().clone() for k, v in network.state_dict().items()}
    plain = {role: _latents(pair, role) for role in ("base", "distilled")}

    with applied(pair, "base", adapter, 1.0):
        assert set(network.peft_config) == {ADAPTER, ADAPTER_NAME}
        adapted = {role: _latents(pair, role) for role in ("base", "distilled")}
        hybrid = _latents(pair, "hybrid", k=2)
    with applied(pair, "distilled", adapter, 0.0):
        zero = {role: _latents(pair, role) for role in ("base", "distilled")}

    for role in ("base", "distilled"):
        assert not torch.equal(adapted[role], plain[role]), role  # the transferred adapter acts on either role
        assert torch.equal(zero[role], plain[role]), role  # weight 0 adds exactly nothing
    assert not torch.equal(adapted["base"], adapted["distilled"])  # the distillation adapter is still toggled
    assert not torch.equal(hybrid, _latents(pair, "hybrid", k=2))

    # The base with the transferred adapter is the plain base network with that adapter alone, bit for bit: a
    # network that never had the distillation adapter, given the same file.
    reference = load_pair(compose("generate", ["model=tiny_qwen"]).model, pair.device, pair.dtype, roles=("base",))
    assert not getattr(reference.base.network, "peft_config", None)
    with applied(reference, "base", adapter, 1.0):
        assert torch.equal(_latents(reference, "base"), adapted["base"])

    # Leaving removes the transferred adapter only: the distillation adapter and every weight are as before.
    assert set(network.peft_config) == {ADAPTER}
    assert all(torch.equal(before[k], v) for k, v in network.state_dict().items()) and len(before) == len(
        network.state_dict()
    )
    for role in ("base", "distilled"):
        assert torch.equal(_latents(pair, role), plain[role]), role


def test_transfer_lora_runs_on_an_adapter_distilled_pair_from_the_command_line(cli, tiny_pairs, tmp_path):
    lora = save_qwen_lora(tiny_pairs("tiny_qwen"), tmp_path / "lora")
    out = tmp_path / "run"
    code, _, err = cli(
        "transfer-lora", "model=tiny_qwen", f"adapter={lora.parent}", f"prompt={PROMPT}", "n=2", "concept=red",
        "clip_model=tiny_random", f"out={out}", "device=cpu",
    )  # fmt: skip
    assert code == 0, err
    with (out / "samples.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    tags = {r["tag"] for r in rows}
    assert tags == {"base", "distilled", "base+lora_s1", "distilled+lora_s1"}
    with (out / "transfer.csv").open(newline="") as f:
        assert {(r["source"], r["target"]) for r in csv.DictReader(f)} == {("base", "base"), ("base", "distilled")}
