"""Loading the checkpoint once per run: the device and dtype, quantization while loading, and the memory rung
(`cogvideox_ddim_memory`), with what was chosen for run.json."""

from __future__ import annotations

from .settings import DTYPES, ModelSettings


def resolve_device(device: str) -> str:
    """The device "auto" means: cuda when available, else the CPU."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def resolve_device_and_dtype(device: str, dtype: str):
    import torch

    device = resolve_device(device)
    if dtype == "auto":
        dtype = "bf16" if device.startswith("cuda") else "fp32"
    return device, getattr(torch, DTYPES[dtype])


def load_pipeline(settings: ModelSettings, log=None):
    """Load the checkpoint into `CogVideoXDDIMInversionPipeline` (quantized while loading with `quantize`) and fit it
    to the device with `cogvideox_ddim_memory.apply_memory_options` (fp8 storage, the offload rung, the step cache).
    Returns the pipeline and a dict of what was chosen (device, dtype, every memory option with the offload rung
    chosen, VAE tiling, free memory), for run.json."""
    import torch

    from ..cogvideox_ddim_memory import apply_memory_options, check_memory_options, quantization_config
    from ..pipeline_cogvideox_ddim_inversion import CogVideoXDDIMInversionPipeline

    log = log or (lambda message: None)
    device, torch_dtype = resolve_device_and_dtype(settings.device, settings.dtype)
    options = settings.memory_options()
    check_memory_options(options, device)  # as the settings were made; again for settings changed since
    storage = " ".join(text for text, on in ((f"{options.weights} weights", options.weights != "bf16"),
                                             (f"{options.quantize} quantized", options.quantize is not None)) if on)
    log(f"Loading {settings.model} ({str(torch_dtype).removeprefix('torch.')}{', ' + storage if storage else ''}) "
        f"for {device}...")
    pipe = CogVideoXDDIMInversionPipeline.from_pretrained(settings.model, dtype=torch_dtype,
                                                          quantization_config=quantization_config(options))
    memory = apply_memory_options(pipe, options, device)
    cuda = torch.device(device).type == "cuda"
    tiling = settings.vae_tiling == "on" or (settings.vae_tiling == "auto" and cuda)
    if tiling:
        pipe.vae.enable_tiling()
        pipe.vae.enable_slicing()
    if settings.compile:
        pipe.transformer.compile()
    chosen = {"device": device, "dtype": str(torch_dtype).removeprefix("torch."), **memory, "vae_tiling": tiling,
              "compile": settings.compile}
    free = memory["free_gpu_memory_gib"]
    log(f"Memory: offload {memory['offload']}, VAE tiling {'on' if tiling else 'off'}"
        + (f", cache {options.cache}" if options.cache else "")
        + ("" if free is None else f", {free:.1f} GiB free on {device}"))
    return pipe, chosen
