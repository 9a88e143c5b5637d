"""The parameters a method updates: the ``trainable`` subset resolved on a model (LoRA adapters
injected when it asks for them), held as views of one flat buffer so a perturbation is one op."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from edgefed.algorithms.models import TaskModel
from edgefed.algorithms.zo import flatten_

LORA_TARGETS = {"encoder": ["query", "value"], "causal": ["q_proj", "v_proj"]}


@dataclass
class Trainable:
    """The parameter subset a method updates (names in a fixed order), as views of one flat buffer."""

    names: list[str]
    params: list[torch.nn.Parameter] = field(repr=False)

    def __post_init__(self):
        self.flat = flatten_(self.params)

    @property
    def numel(self) -> int:
        return sum(p.numel() for p in self.params)

    def snapshot(self) -> list[torch.Tensor]:
        return [p.detach().clone() for p in self.params]

    def all_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.params)

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        with torch.no_grad():
            for p, saved in zip(self.params, snapshot):
                p.copy_(saved)


def add_lora(model: TaskModel, rank: int = 8, alpha: int = 16) -> None:
    """Inject LoRA adapters (peft; DeComFL's r=8, alpha=16) into the attention query and value
    projections. B starts at zero, so the model computes exactly what it did before."""
    from peft import LoraConfig, inject_adapter_in_model

    config = LoraConfig(r=rank, lora_alpha=alpha, lora_dropout=0.0, target_modules=LORA_TARGETS[model.kind])
    inject_adapter_in_model(config, model.backbone)


def select_trainable(model: TaskModel, subset: str) -> Trainable:
    """Resolve a subset spec: ``all``, ``head``, ``bias``, ``norm``, ``lora`` (adapters injected
    on first use), ``last:N`` (the last N layers + head), ``lora-last:N`` (the adapters of the last
    N layers only: with ``+head``, FedSPZO's block 2 at split ``layers - N`` under ``lora+head``),
    joined with ``+``."""
    wants_lora = any(part == "lora" or part.startswith("lora-last:") for part in subset.split("+"))
    if wants_lora and not any("lora_" in n for n, _ in model.named_parameters()):
        add_lora(model)
    picks: set[str] = set()
    for part in subset.split("+"):
        picks |= _subset_names(model, part)
    named = [(n, p) for n, p in model.named_parameters() if n in picks]
    if not named:
        raise ValueError(f"trainable subset {subset!r} selects no parameters")
    for _, p in model.named_parameters():
        p.requires_grad_(False)
    return Trainable([n for n, _ in named], [p for _, p in named])


def _subset_names(model: TaskModel, part: str) -> set[str]:
    """The parameter names one ``+``-separated part of a subset spec selects."""
    names = [n for n, _ in model.named_parameters()]
    if part == "all":
        return set(names)
    if part == "head":
        # a tied LM head is the embedding matrix; "head" then means the final norm
        start = "backbone.model.norm" if model.kind == "causal" else "head."
        return {n for n in names if n.startswith(start)}
    if part == "bias":
        return {n for n in names if n.endswith(".bias")}
    if part == "norm":
        return {n for n in names if "norm" in n.lower()}
    if part == "lora":
        return {n for n in names if "lora_" in n}
    if part.startswith(("last:", "lora-last:")):
        count = int(part.split(":", 1)[1])
        if not 0 < count <= model.num_layers:
            raise ValueError(f"{part!r}: the model has {model.num_layers} layers")
        top = model.block_param_names(model.num_layers - count)[1]
        return top if part.startswith("last:") else {n for n in top if "lora_" in n}
    raise ValueError(f"unknown trainable subset {part!r}")
