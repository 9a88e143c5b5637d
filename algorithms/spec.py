"""What every method's typed spec shares (each method's own is in its registry entry): the scenario schema is
built from the specs, so a scenario can only name fields that some method reads."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt

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


def value_limits(spec: type[BaseModel]) -> dict[str, tuple[float | None, float | None]]:
    """The least and greatest value each numeric field of ``spec`` can take, from its schema:
    None on a side with no bound, or whose bound no value attains (a real number above 0)."""
    limits = {}
    for name, field in spec.model_json_schema()["properties"].items():
        for branch in field.get("anyOf", [field]):
            if branch.get("type") not in ("integer", "number"):
                continue
            step = 1 if branch["type"] == "integer" else None
            low = branch.get("minimum", branch["exclusiveMinimum"] + step
                             if step and "exclusiveMinimum" in branch else None)
            high = branch.get("maximum", branch["exclusiveMaximum"] - step
                              if step and "exclusiveMaximum" in branch else None)
            limits[name] = (low, high)
    return limits


class ZOSpec(MethodSpec):
    """What every zero-order method shares: MeZO's step and its directions."""

    eps: PositiveFloat = 1e-3
    perturbations: PositiveInt = 1
    distribution: Literal["gaussian", "rademacher"] = "gaussian"
    cache_z: bool = Field(False, description="the device draws z once per step and keeps it (charged one draw "
                          "per step and a trainable-size buffer; off: drawn for every pass, MeZO's way). The host "
                          "keeps z either way, so this moves simulated figures, not host speed")
