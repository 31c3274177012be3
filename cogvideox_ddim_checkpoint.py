"""What a CogVideoX checkpoint is and allows, read from its configs alone (no weights).

Every function takes the transformer's (and where needed the VAE's) config as a mapping: a loaded model's `config`
or the dict `checkpoint_config()` reads from the checkpoint's JSON files. So the command line, batch and the app can
check a request against a checkpoint before any weights load, with the same rules the pipeline applies.
"""

import math
import os
import warnings
from collections.abc import Mapping

from .cogvideox_ddim_choices import DEFAULT_MODEL  # noqa: F401  (the default --model, torch-free)
from .cogvideox_ddim_errors import ParameterError


# (height, width) CogVideoX 1.5 was trained at (model card). Its config's sample_height/width (300 latents) bound the
# RoPE grid instead: they are not a size to generate at.
COGVIDEOX_1_5_NATIVE_SIZE = (768, 1360)
SPATIAL_COMPRESSION = 8  # CogVideoX's VAE: 8x in space (the VAE config states no ratio of its own)
_REQUIRED_TRANSFORMER_KEYS = ("patch_size", "patch_size_t", "use_rotary_positional_embeddings", "sample_frames",
                              "in_channels")


def checkpoint_config(model: str | os.PathLike) -> dict:
    """The checkpoint's transformer, VAE and scheduler configs (`{"transformer": {...}, "vae": {...}, "scheduler":
    {...}}`), read from its JSON files without loading any weights.

    A Hub id is read from the Hub, or from the local cache when the Hub cannot be reached (`HF_HUB_OFFLINE=1`, no
    network): without a cached copy that fails at once, saying so, instead of after the Hub client's retries."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    local_files_only = False
    unreachable = None
    if not os.path.isdir(model):
        unreachable = hub_unreachable()
        local_files_only = unreachable is not None

    def read(cls, subfolder):
        with warnings.catch_warnings():  # diffusers 0.42 passes an argument huggingface_hub 2 deprecated: not ours
            warnings.filterwarnings("ignore", message=".*local_dir_use_symlinks.*")
            return dict(cls.load_config(model, subfolder=subfolder, local_files_only=local_files_only))

    try:
        return {
            "transformer": read(CogVideoXTransformer3DModel, "transformer"),
            "vae": read(AutoencoderKLCogVideoX, "vae"),
            "scheduler": read(CogVideoXDDIMScheduler, "scheduler"),
        }
    except (OSError, ValueError) as error:
        if unreachable is not None:
            raise ParameterError(
                "model",
                f"Could not reach the Hub ({unreachable}) and {os.fspath(model)!r} is not in the local cache: pass a "
                "local folder with {model} (a checkpoint downloaded with `hf download`), or connect and retry.",
            ) from None
        raise ValueError(
            f"Could not read the CogVideoX checkpoint {os.fspath(model)!r} ({error}). Pass a Hub id such as "
            f"{DEFAULT_MODEL} or a folder holding model_index.json with transformer/, vae/ and scheduler/ subfolders."
        ) from None


def hub_unreachable(timeout: float = 10.0) -> str | None:
    """Why the Hub cannot be reached (offline mode, or no answer from its endpoint to one request), or None when it
    answers. One request without retries: the Hub client retries a refused connection for about half a minute."""
    from huggingface_hub import constants
    from huggingface_hub.utils import get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    try:
        get_session().head(constants.ENDPOINT, timeout=timeout)
    except Exception as error:  # any failure to get an answer (connection refused, DNS, timeout, proxy)
        return f"no network? {constants.ENDPOINT} did not answer: {type(error).__name__}"
    return None


def check_cogvideox_config(transformer: Mapping, vae: Mapping, transformer_name: str = "transformer",
                           vae_name: str = "VAE"):
    """Refuse, with a message naming the fix, configs that are not a CogVideoX checkpoint's."""
    missing = [key for key in _REQUIRED_TRANSFORMER_KEYS if key not in transformer]
    if missing or "temporal_compression_ratio" not in vae:
        raise ValueError(
            f"This is not a CogVideoX checkpoint: got a {transformer_name} transformer and a {vae_name} VAE (missing "
            f"CogVideoX settings: {missing or ['temporal_compression_ratio']}). Load a CogVideoX checkpoint such as "
            "THUDM/CogVideoX-5b or THUDM/CogVideoX-2b."
        )
    in_channels, out_channels = transformer["in_channels"], transformer.get("out_channels") or 16
    if in_channels not in (out_channels, 2 * out_channels):
        raise ValueError(
            f"This CogVideoX transformer takes {in_channels} input channels for {out_channels} output channels; "
            "expected a text-to-video (equal) or image-to-video (twice as many) checkpoint."
        )


def is_image_to_video(transformer: Mapping) -> bool:
    """Image-to-video checkpoints (5B-I2V, 1.5-5B-I2V) take image latents concatenated on the channel axis."""
    return transformer["in_channels"] == 2 * (transformer.get("out_channels") or 16)


def native_size(transformer: Mapping, spatial_compression: int = SPATIAL_COMPRESSION) -> tuple[int, int]:
    """`(height, width)` of the config's sample size: 2B/5B's native 480x720; for 1.5 the bound of its RoPE grid."""
    return transformer["sample_height"] * spatial_compression, transformer["sample_width"] * spatial_compression


def any_size(transformer: Mapping) -> bool:
    """CogVideoX 1.5 (RoPE only, temporal patches) runs at sizes other than its config's; the others do not."""
    return (
        transformer.get("patch_size_t") is not None
        and bool(transformer.get("use_rotary_positional_embeddings"))
        and not transformer.get("use_learned_positional_embeddings")
    )


def default_video_size(
    transformer: Mapping,
    source_height: int | None = None,
    source_width: int | None = None,
    spatial_compression: int = SPATIAL_COMPRESSION,
) -> tuple[int, int]:
    """
    The `(height, width)` a source video is brought to when no size is given.

    CogVideoX 1.5 (RoPE only, temporal patches: any resolution) keeps the source's aspect and orientation (a portrait
    video stays portrait) at about its native pixel count (1360x768), both sides multiples of the VAE's 8 times the
    patch size (16), within its RoPE grid. Other checkpoints get their native size (720x480), the only one 5B-I2V's
    learned positional embeddings allow, as does a call without a source size.
    """
    native = native_size(transformer, spatial_compression)
    if source_height is None or source_width is None or not any_size(transformer):
        return native
    pixel_count = min(math.prod(COGVIDEOX_1_5_NATIVE_SIZE), math.prod(native))
    multiple = spatial_compression * transformer["patch_size"]
    return aspect_preserving_size(source_height, source_width, pixel_count, multiple, *native)


def check_size_for_positional_embeddings(
    transformer: Mapping, height: int, width: int, spatial_compression: int = SPATIAL_COMPRESSION
):
    """Refuse a size the checkpoint's positional embeddings do not cover, naming the sizes that work.

    Learned positional embeddings (5B-I2V) exist for the native size only. CogVideoX 1.5 (temporal patches) builds its
    RoPE table for the config's `sample_height x sample_width` latents, `// patch_size` tokens a side, and diffusers
    (`get_3d_rotary_pos_embed(grid_type="slice")`) only slices that table: a larger token grid cannot be extended and
    would fail inside diffusers' embedding code. (CogVideoX 1.0's RoPE interpolates to any grid instead.)
    """
    native = native_size(transformer, spatial_compression)
    if transformer.get("use_learned_positional_embeddings") and (height, width) != native:
        raise ValueError(
            f"This checkpoint has learned positional embeddings for {native[1]}x{native[0]} (width x height) only, "
            f"not {width}x{height}: leave the size unset (the source is fitted to it), or use a checkpoint with RoPE "
            "only (e.g. CogVideoX1.5-5B-I2V) for other sizes."
        )
    if transformer.get("patch_size_t") is not None and transformer.get("use_rotary_positional_embeddings"):
        token = spatial_compression * transformer["patch_size"]
        max_height = transformer["sample_height"] // transformer["patch_size"] * token
        max_width = transformer["sample_width"] // transformer["patch_size"] * token
        if height // token > max_height // token or width // token > max_width // token:
            raise ValueError(
                f"{width}x{height} (width x height) is beyond this CogVideoX 1.5 checkpoint's RoPE grid, which covers "
                f"at most {max_width}x{max_height}: pass a smaller height/width, or leave them unset (the source is "
                "fitted within the grid at its own aspect)."
            )


def padding_frames(transformer: Mapping, latent_frames: int) -> int:
    """Latent frames CogVideoX 1.5 (temporal patches of `patch_size_t`) needs in front of `latent_frames`."""
    patch_size_t = transformer.get("patch_size_t")
    return 0 if patch_size_t is None else (-latent_frames) % patch_size_t


def latent_frame_count(num_frames: int, temporal_compression: int = 4) -> int:
    """Latent frames of a video of `num_frames` (4k + 1) frames: the first on its own, then one per group."""
    return (num_frames - 1) // temporal_compression + 1


def pixel_frame_count(latent_frames: int, temporal_compression: int = 4) -> int:
    """Video frames that `latent_frames` latent frames decode to (the inverse of `latent_frame_count`)."""
    return (latent_frames - 1) * temporal_compression + 1


def aspect_preserving_size(
    source_height: int,
    source_width: int,
    pixel_count: int,
    multiple: int = 16,
    max_height: int | None = None,
    max_width: int | None = None,
) -> tuple[int, int]:
    """
    `(height, width)` with the source's aspect and orientation, about `pixel_count` pixels, both multiples of
    `multiple`, within `max_height` x `max_width`.

    For example a 1920x1080 (w x h) source at CogVideoX 1.5's 1360x768 pixel count gives 1360x768, a 1080x1920
    portrait source 768x1360.
    """
    if min(source_height, source_width, pixel_count, multiple) < 1:
        raise ValueError(f"Sizes must be positive, got a {source_width}x{source_height} source (w x h).")
    scale = math.sqrt(pixel_count / (source_height * source_width))
    if max_height is not None:
        scale = min(scale, max_height / source_height)
    if max_width is not None:
        scale = min(scale, max_width / source_width)

    def snap(size: float, largest: int | None) -> int:
        snapped = max(multiple, round(size / multiple) * multiple)
        return snapped if largest is None or snapped <= largest else max(multiple, largest // multiple * multiple)

    return snap(source_height * scale, max_height), snap(source_width * scale, max_width)
