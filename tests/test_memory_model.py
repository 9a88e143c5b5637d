"""Declared peak memory (the method's own model) against the peak measured on the host, on
tiny-bert: every method's example training every weight and its last two layers, and FedAvg
training LoRA adapters. bench/memory_model.py does the same for every trainable kind on MiniLM-L6.

Measured = weights + the peak of tensor storages alive during one local update, tracked op by op
with a TorchDispatchMode (``memory.PeakLiveBytes``), the host holding what a device holds
(``device_like``). Tolerance: within 15%. A tiny random Llama, loaded as a user's local model
folder, checks what causal LMs add: a forward keeps no KV cache, and a gated MLP keeps more."""
import pytest

from edgefed.algorithms.registry import METHODS, example
from tests.helpers import tiny_setup

from bench.memory_model import device_like, measure_update

CASES = [(name, kind) for name in METHODS for kind in ("all", "last:2")] + [("fedavg", "lora")]


@pytest.mark.parametrize("name,kind", CASES)
def test_declared_peak_memory_matches_host_measurement(name, kind):
    method = METHODS[name]
    cfg = method.Spec(**{**example(name), "trainable": kind})
    with device_like():
        model, data = tiny_setup()
        algo = method.cls(model, data, cfg, seed=0)
        measured = measure_update(algo)
    declared = algo.peak_memory_bytes()
    print(f"{name} {kind}: declared {declared} measured {measured}")
    assert abs(declared / measured - 1) < 0.15


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory):
    """A tiny random Llama (gated MLP, grouped KV heads) saved as a local model folder, with
    MiniLM's tokenizer: what a user's own causal LM goes through in ``load_backbone``."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from edgefed.algorithms.models import resolve_model_path

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("minilm-l6")[0])
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=88, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, architectures=["LlamaForCausalLM"])
    LlamaForCausalLM(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_causal_lm_scores_without_a_kv_cache(tiny_llama):
    """A training or scoring forward never decodes: a KV cache would only hold every layer's keys
    and values until the forward ends (47 MB for SmolLM2-135M at batch 16 x 64 tokens)."""
    import torch

    from edgefed.algorithms.models import load_backbone

    backbone, tokenizer, kind = load_backbone(str(tiny_llama), "auto", "fp32")
    assert kind == "causal" and backbone.config.use_cache is False
    out = backbone(input_ids=torch.tensor([tokenizer.encode("a small gem")]))
    assert out.past_key_values is None


def test_the_kept_activations_follow_the_mlp_shape(tiny_llama):
    """At i = 4h and a plain MLP the rule is Korthikanti's 16h per token (10h with frozen linears);
    a gated MLP keeps 2i more."""
    from edgefed.algorithms.models import TaskModel, gated_mlp, load_backbone, training_activation_bytes

    plain, _ = tiny_setup()  # tiny-bert: h 32, i 64
    llama = TaskModel(*load_backbone(str(tiny_llama), "auto", "fp32"), 2, label_words=["good", "bad"])
    assert not gated_mlp(plain) and gated_mlp(llama)
    plain.backbone.config.intermediate_size = 4 * 32
    b, s, h, i = 2, 8, 32, 88
    for train, c in ((True, 16), (False, 10)):
        one, two = (training_activation_bytes(plain, b, s, n, train) for n in (1, 2))
        assert two - one == 4 * (s * b * c * h + 2 * s * s * b)  # one more layer: fp32 elements, 2 heads
        one, two = (training_activation_bytes(llama, b, s, n, train) for n in (1, 2))
        per_token = (8 * h + 2 * i if train else 6 * h + i) + 2 * i
        assert two - one == 4 * (s * b * per_token + 4 * s * s * b)
