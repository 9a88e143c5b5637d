"""A method's hyperparameters as a typed spec: the scenario schema is built from the specs, so a
scenario can only name fields that some method reads."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeInt, PositiveFloat, PositiveInt

BUILTIN_MODELS = {"minilm-l6", "smollm2-135m", "tiny-bert"}  # model.name without a path (models.load_backbone)
TRAINABLE_PATTERN = r"^(all|head|bias|norm|lora|(lora-)?last:[1-9]\d*)(\+(all|head|bias|norm|lora|(lora-)?last:[1-9]\d*))*$"


class MethodSpec(BaseModel):
    """A method's hyperparameters: unknown keys and non-finite numbers are refused."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str  # each method narrows it to its own Literal: the scenario's discriminator
    lr: PositiveFloat = 1e-3
    local_steps: PositiveInt = 1
    batch_size: PositiveInt = 16
    trainable: str = Field("all", description="all | head | bias | norm | lora | last:N | lora-last:N (the last N layers' LoRA adapters), joined with +",
                           pattern=TRAINABLE_PATTERN)

    def device_to_fit(self, slowest: str, devices) -> str:
        """The fleet device (a name in ``devices``) whose speed and memory the method fits before
        the first round (``Algorithm.fit_device``): the slowest, which paces a round, unless the
        spec names another."""
        return slowest


class ZOSpec(MethodSpec):
    """What every zero-order method shares: MeZO's step and its directions."""

    eps: PositiveFloat = 1e-3
    perturbations: PositiveInt = 1
    distribution: Literal["gaussian", "rademacher"] = "gaussian"
    cache_z: bool = Field(False, description="the device draws z once per step and keeps it (charged one draw "
                          "per step and a trainable-size buffer; off: drawn for every pass, MeZO's way). The host "
                          "keeps z either way, so this moves simulated figures, not host speed")


# each method's own fields (its module holds its class; registry.py names both)

class DeComFLSpec(ZOSpec):
    name: Literal["decomfl"]


class FedSPZOSpec(ZOSpec):
    name: Literal["fedspzo"]
    perturbations: Literal[1] = Field(1, description="unused: FedSPZO takes p1 and p2")
    split: NonNegativeInt | Literal["auto"] = Field("auto", description="layer index: block 1 = embed + layers[:split]")
    p1: PositiveInt = Field(1, description="block-1 directions per step")
    p2: PositiveInt | Literal["auto"] = Field("auto", description="block-2 directions per block-1 direction")
    p2_max: PositiveInt = 32
    auto_device: str | None = Field(None, description="fleet device that split/p2 auto plan for; default the slowest")
    auto_step_s: PositiveFloat | None = Field(None, description="seconds one local step may take on auto_device")
    auto_budget: PositiveFloat = Field(2.0, description="else: step budget in plain MeZO steps (2*p1 full passes)")

    def device_to_fit(self, slowest, devices):
        """``auto_device`` if named, else the slowest."""
        name = self.auto_device or slowest
        if name not in devices:
            raise ValueError(f"algorithm.auto_device: unknown device {name!r}")
        return name


class FedKSeedSpec(ZOSpec):
    name: Literal["fedkseed"]
    perturbations: Literal[1] = Field(1, description="FedKSeed takes one perturbation per step")
    pool_size: PositiveInt = Field(4096, le=65536, description="K candidate seeds shared from the start")
    pro: bool = Field(False, description="FedKSeed-Pro: sample seeds by their scalar history")


class FedZOSpec(ZOSpec):
    name: Literal["fedzo"]


class FedAvgSpec(MethodSpec):
    name: Literal["fedavg"]
    optimizer: Literal["sgd", "adam"] = "adam"
