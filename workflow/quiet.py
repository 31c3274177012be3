"""Third-party messages printed on import or load that are known to be harmless here, filtered by logger and exact
text; every other warning and log line is left alone."""

import logging
import re
import warnings


# logger name -> patterns of its messages that say nothing a user of this tool can act on
KNOWN_HARMLESS_LOGS = {
    # torchao's wheel carries CUDA kernels; on a CPU torch it cannot load them (quantization works without them).
    "torchao": (r"Failed to load .*_C.*\.so",),
    # torchao registers its enums with torch's pytree, which newer torch deprecates for enums (torchao's to change).
    "torch.utils._pytree": (r".* is an Enum subclass and is now natively supported by torch\.compile",),
    # diffusers 0.42 looks for torchao tensor classes that torchao 0.18 moved; only checkpoints *saved* quantized by
    # torchao need them, and this tool quantizes while loading.
    "diffusers.quantizers.torchao.torchao_quantizer": (r"Unable to import `torchao` Tensor objects",),
}
KNOWN_HARMLESS_WARNINGS = (
    # diffusers 0.42 passes `local_dir_use_symlinks` to huggingface_hub, which warns on every config read.
    r".*local_dir_use_symlinks.*",
)


class _DropKnown(logging.Filter):
    def __init__(self, patterns):
        super().__init__()
        self.patterns = [re.compile(pattern) for pattern in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(pattern.match(message) for pattern in self.patterns)


def quiet_known_warnings():
    """Install the filters (once per process; installing again changes nothing)."""
    for name, patterns in KNOWN_HARMLESS_LOGS.items():
        logger = logging.getLogger(name)
        if not any(isinstance(existing, _DropKnown) for existing in logger.filters):
            logger.addFilter(_DropKnown(patterns))
    for pattern in KNOWN_HARMLESS_WARNINGS:
        warnings.filterwarnings("ignore", message=pattern)
