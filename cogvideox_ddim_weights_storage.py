"""What an inversion's weights were stored in: the 8-bit storage of the transformer and text encoder (fp8 storage by
layerwise casting, torchao int8 / fp8 quantization), recorded in the inversion fingerprint and compared when the
inversion is reused, since a quantized inversion is exact only for the quantized model that made it.
`cogvideox_ddim_memory` re-exports these names.

Imports only modules the pipeline file also imports directly (diffusers' `custom_pipeline` loader ships only the
pipeline file's direct relative imports).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from .cogvideox_ddim_errors import ParameterError


def _storage(model) -> str | None:
    """How the linear layers inside `model`'s blocks (the transformer's `transformer_blocks`, T5's `block`) store
    their weights when not in the load dtype: "int8" / "fp8" (torchao's tensors) or "fp8-storage" (layerwise casting,
    which keeps the blocks' norms in the load dtype); None in the load dtype."""
    import torch

    # Loaded with a TorchAoConfig: its quantization type names the storage, whatever torchao's tensor class is called.
    quant_type = getattr(getattr(getattr(model, "hf_quantizer", None), "quantization_config", None), "quant_type", None)
    if quant_type is not None:
        kind = type(quant_type).__name__ if not isinstance(quant_type, str) else quant_type
        if "int8" in kind.lower():
            return "int8"
        if "float8" in kind.lower():
            return "fp8"
    for name, module in model.named_modules():
        if not (isinstance(module, torch.nn.Linear) and re.search(r"(^|\.)(transformer_blocks|block)\.\d+\.", name)):
            continue
        weight = module.weight
        kind = type(weight.data if isinstance(weight, torch.nn.Parameter) else weight).__name__
        if "Int8" in kind:
            return "int8"
        if "Float8" in kind:
            return "fp8"
        if weight.dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
            return "fp8-storage"
    return None


def weights_storage(pipe) -> dict | None:
    """The transformer's and text encoder's 8-bit storage (`{"transformer": "int8", "text_encoder": None}`), or None
    when both keep the load dtype. Recorded in the inversion fingerprint: an inversion stays exact only when a model
    stored the same way regenerates it (`check_weights_storage`)."""
    storage = {}
    for name in ("transformer", "text_encoder"):
        model = getattr(pipe, name, None)
        storage[name] = None if model is None else _storage(model)
    return storage if any(storage.values()) else None


def expected_weights_storage(options) -> dict | None:
    """The `weights_storage` a pipeline loaded with `options` (`MemoryOptions`) will have, known before any weights
    load."""
    kind = {"int8": "int8", "fp8": "fp8"}.get(options.quantize) or ("fp8-storage" if options.weights == "fp8" else None)
    if kind is None:
        return None
    return {"transformer": kind, "text_encoder": kind if options.quantize_text_encoder else None}


# The memory option that gives each storage (a template: `{name}` is a `MemoryOptions` field, see ParameterError).
STORAGE_OPTIONS = {"int8": "{quantize} int8", "fp8": "{quantize} fp8", "fp8-storage": "{weights} fp8"}


def _describe_storage(storage: dict | None) -> str:
    """A storage record in template words (`{weights}`, `{quantize}` name the `MemoryOptions` fields)."""
    if not storage or not any(storage.values()):
        return "weights in the load dtype (no {weights} fp8 or {quantize})"
    parts = [f"{name} {kind} ({STORAGE_OPTIONS.get(kind, kind)})" for name, kind in storage.items() if kind]
    return ", ".join(parts)


def check_weights_storage(recorded: Mapping | None, current: Mapping):
    """Refuse an inversion (its fingerprint, `settings["model"]`) made with other 8-bit weight storage than this
    pipeline's (`current`, `inversion_fingerprint()`): a quantized inversion is exact only when the same quantized
    model regenerates it, and a bf16 one is not the quantized model's."""
    before, now = (recorded or {}).get("weights_storage"), current.get("weights_storage")
    if (before or None) != (now or None):
        text_encoder = any((storage or {}).get("text_encoder") for storage in (before, now))
        raise ParameterError(
            "weights" if "fp8-storage" in (before or {}).values() else "quantize",
            f"This inversion was made with {_describe_storage(before)}; this pipeline has {_describe_storage(now)}. "
            "An inversion is exact only for the weights that made it: load the pipeline with the same {weights} / "
            f"{{quantize}}{' / {quantize_text_encoder}' if text_encoder else ''} memory options, or invert "
            "the video again.",
        )
