"""The named choices of the pipeline's text arguments, in one torch-free place.

The shipped modules check their arguments against these, and the front ends (`workflow.settings`) offer them as the
command line's choices and the page's radio buttons without importing torch: one definition, never a copy.
"""

DEFAULT_MODEL = "THUDM/CogVideoX-5b"

REFERENCE_MODES = ("shared", "paired")  # one reference row per step for all prompts, or one per guidance branch
START_MODES = ("inverted", "noise")  # an edit starts from the inverted noise, or fresh noise (the published method)
WINDOW_WEIGHTINGS = ("flat", "pyramid", "hann")  # how overlapping windows' predictions are averaged per frame
DEFAULT_WINDOW_WEIGHTING = "pyramid"  # diffusers' FreeNoise choice; measured in docs/long_videos.md
WEIGHTS = ("bf16", "fp8")  # how the transformer's weights are stored: the load dtype, or fp8 (layerwise casting)
QUANTIZE = ("int8", "fp8")  # torchao quantization while loading
OFFLOAD_RUNGS = ("none", "model", "group", "group-leaf", "sequential")  # from the most to the least resident weights
OFFLOAD_MODES = (*OFFLOAD_RUNGS, "auto")
CACHES = ("first-block", "mag", "taylorseer")  # step caches of the edits
RESIZE_MODES = ("crop", "pad", "stretch")  # how frames of another aspect reach the model's size
SAMPLING_MODES = ("first", "spread")  # which frames of a clip are read
