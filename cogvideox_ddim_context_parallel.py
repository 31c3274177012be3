"""Context (sequence) parallelism for CogVideoX: one video's tokens spread over N processes, attention exact.

Each process holds 1/N of the video tokens of every batch row through the transformer blocks; the text tokens stay
whole on every process (they are the same everywhere). Per attention layer (Ulysses):

1. every process projects its own tokens to queries/keys/values (all heads), normalises them and applies RoPE with
   the frequencies of its own tokens;
2. one all-to-all trades token shards for head shards: afterwards each process holds *all* video tokens of its
   `heads / N` heads. Its text queries/keys/values are the same heads sliced locally (no communication);
3. attention runs on `[text ; all video tokens]` for those heads exactly as in one process, so reference rows (which
   are batch rows, exchanged like any other) join the sample rows' keys/values here, after the exchange, and
   reference attention (`reference_weight` included) is unchanged; the text-attention recorder sees whole rows too;
4. one all-to-all brings the video outputs back to token shards with all heads, and the text outputs (one head slice
   per process) are all-gathered, so the text tokens stay identical on every process.

Tokens are split after the patch embedding (`transformer_blocks.0`'s inputs), so 2B's sinusoidal and 5B-I2V's learned
positions are already added and 1.5's temporal patches are already formed; they are gathered again at `proj_out`.
Token counts that do not divide by N are padded at the end; the padding is dropped after the exchange (nothing
attends to it) and cut from the gathered output. The batch (classifier-free guidance, reference rows) is never split.

Why not diffusers' `enable_parallelism` with a `_cp_plan` (0.42.1): its Ulysses shards the whole joint sequence
(text included) inside `dispatch_attention_fn`, so our reference rows' keys/values would have to be concatenated
before the exchange (shard-interleaved, which breaks `reference_weight`'s positional bias); its sharder needs
divisible token counts (or `ulysses_anything`'s uneven shards); `_resolve_parallel_config` divides by
`torch.accelerator.device_count()` (0 without a GPU: ZeroDivisionError); and it cannot be undone on a model. The same
hook mechanism (`diffusers.hooks.HookRegistry`) does the split/gather here, and the attention layers get a hook that
wraps whichever processor is installed at call time, so the pipeline may swap processors freely.

Inference only: the collectives are not differentiable.
"""

import dataclasses
import math
import os
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as F
from diffusers.hooks import HookRegistry, ModelHook
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb

from .cogvideox_ddim_errors import ParameterError
from .processors.reference_attention import CogVideoXRefAttnProcessor, reference_attention
from .processors.text_attention import CogVideoXTextAttentionRecorder


_SPLIT_HOOK = "cogvideox_context_parallel_split"
_GATHER_HOOK = "cogvideox_context_parallel_gather"
_ATTENTION_HOOK = "cogvideox_context_parallel_attention"
_SAME_INPUTS_HOOK = "cogvideox_context_parallel_same_inputs"


@dataclass
class ContextParallelState:
    """What the hooks of one transformer share: the collectives over its process group and the padding of the
    current forward pass. The collectives are fields so that the cost model can run the same code on the meta
    device (benchmarks/context_parallel_cost.py); `enable_context_parallel` binds torch.distributed's."""

    degree: int
    rank: int
    all_to_all: Callable[[torch.Tensor], torch.Tensor]  # over dim 0: chunk r to process r, chunk r from process r
    all_gather: Callable[[torch.Tensor], list[torch.Tensor]]  # one tensor per process, in rank order
    all_reduce_mean: Callable[[torch.Tensor], torch.Tensor]
    video_tokens: int = 0  # tokens per row before padding, set by the split at the first block
    local_tokens: int = 0  # tokens per row on this process (padding included)
    exchanges: int = 0  # attention calls that went through the all-to-all (tests read it)

    @property
    def padding(self) -> int:
        return self.local_tokens * self.degree - self.video_tokens


def distributed_collectives(group: dist.ProcessGroup | None) -> dict:
    """torch.distributed's collectives over `group`, as `ContextParallelState` takes them."""
    degree = dist.get_world_size(group)

    def all_to_all(tensor):
        tensor = tensor.contiguous()  # before empty_like, which would copy a permuted tensor's strides
        output = torch.empty_like(tensor)
        dist.all_to_all_single(output, tensor, group=group)
        return output

    def all_gather(tensor):
        tensor = tensor.contiguous()
        parts = [torch.empty_like(tensor) for _ in range(degree)]
        dist.all_gather(parts, tensor, group=group)
        return parts

    def all_reduce_mean(tensor):
        dist.all_reduce(tensor, group=group)
        return tensor / degree

    return dict(all_to_all=all_to_all, all_gather=all_gather, all_reduce_mean=all_reduce_mean)


# ---------------------------------------------------------------------------------------------------------------------
# Process group


def init_process_group_from_env(backend: str | None = None) -> tuple[int, int, torch.device]:
    """Initialise torch.distributed from the variables `torchrun` (or `accelerate launch`) sets: `RANK`,
    `WORLD_SIZE`, `LOCAL_RANK`, `MASTER_ADDR`, `MASTER_PORT`. The backend defaults to nccl with GPUs, gloo without.
    Returns `(rank, world_size, device)`; a no-op apart from that if the group already exists."""
    missing = [name for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing and not dist.is_initialized():
        raise RuntimeError(
            f"Context parallelism needs torch.distributed; {', '.join(missing)} not set. Launch with "
            "`torchrun --nproc_per_node N ...` (or `accelerate launch --num_processes N ...`)."
        )
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        backend = backend or ("nccl" if device.type == "cuda" else "gloo")
        dist.init_process_group(backend=backend, device_id=device if device.type == "cuda" else None)
    return dist.get_rank(), dist.get_world_size(), device


def working_degrees(num_heads: int, limit: int = 16) -> list[int]:
    """Degrees that Ulysses can use for `num_heads` heads: the divisors up to `limit`."""
    return [d for d in range(1, limit + 1) if num_heads % d == 0]


# ---------------------------------------------------------------------------------------------------------------------
# Enabling


def enable_context_parallel(transformer, degree: int | None = None, process_group: dist.ProcessGroup | None = None):
    """Spread the video tokens of `transformer` (`CogVideoXTransformer3DModel`) over `degree` processes (default:
    every process of `process_group`).

    Every process of `process_group` (default: the whole world, which must then have `degree` processes) calls the
    transformer with the same full inputs and gets the same full output; inputs that differ between processes (e.g.
    noise drawn without a seeded generator) are refused at the call. Install attention processors as usual
    (`CogVideoXAttnProcessor2_0`, `CogVideoXRefAttnProcessor`, `CogVideoXTextAttentionRecorder`): the hook on each
    attention layer runs the installed one's computation sharded. Returns the shared `ContextParallelState`.
    """
    if not dist.is_available() or not dist.is_initialized():
        raise RuntimeError(
            "Context parallelism needs an initialised torch.distributed process group: launch with `torchrun "
            "--nproc_per_node N` and call `init_process_group_from_env()` before `enable_context_parallel`."
        )
    group_size = dist.get_world_size(process_group)
    degree = group_size if degree is None else degree
    if degree != group_size:
        raise ValueError(
            f"`degree={degree}` but the process group has {group_size} processes: launch {degree} processes, or pass "
            f"a group of {degree} (`torch.distributed.new_group(ranks)`) as `process_group`."
        )
    num_heads = transformer.config.num_attention_heads
    if num_heads % degree:
        raise ValueError(
            f"Context parallelism over {degree} processes splits the {num_heads} attention heads evenly; "
            f"{num_heads} heads allow degrees {working_degrees(num_heads)}."
        )
    if getattr(transformer, "_context_parallel_state", None) is not None:
        raise RuntimeError("Context parallelism is already on for this transformer: `disable_context_parallel` first.")

    state = ContextParallelState(
        degree=degree, rank=dist.get_rank(process_group), **distributed_collectives(process_group)
    )
    if degree > 1:
        install_context_parallel_hooks(transformer, state)
        HookRegistry.check_if_exists_or_initialize(transformer).register_hook(
            SameInputsHook(process_group), _SAME_INPUTS_HOOK
        )
    transformer._context_parallel_state = state
    return state


def enable_pipeline_context_parallel(pipe, degree: int | None = None, process_group: dist.ProcessGroup | None = None):
    """`CogVideoXDDIMInversionPipeline.enable_context_parallel`: `enable_context_parallel` on its transformer, first
    joining the launch's process group (`init_process_group_from_env`) when there is none."""
    if process_group is None and not (dist.is_available() and dist.is_initialized()):
        init_process_group_from_env()
    return enable_context_parallel(pipe.transformer, degree, process_group)


def install_context_parallel_hooks(transformer, state: ContextParallelState):
    """The hooks alone, without checks (the cost model installs them on a meta-device transformer)."""
    for index, block in enumerate(transformer.transformer_blocks):
        # Every block gets the whole RoPE tables from the transformer; only the first gets the whole video.
        HookRegistry.check_if_exists_or_initialize(block).register_hook(
            VideoTokenSplitHook(state, split_hidden_states=index == 0), _SPLIT_HOOK
        )
    HookRegistry.check_if_exists_or_initialize(transformer.proj_out).register_hook(
        VideoTokenGatherHook(state), _GATHER_HOOK
    )
    for module in transformer.modules():
        if isinstance(module, Attention):
            HookRegistry.check_if_exists_or_initialize(module).register_hook(
                ContextParallelAttentionHook(state), _ATTENTION_HOOK
            )


def disable_context_parallel(transformer):
    """Remove the hooks of `enable_context_parallel`; the transformer computes on one process again."""
    if getattr(transformer, "_context_parallel_state", None) is None:
        return
    for module in transformer.modules():
        registry = getattr(module, "_diffusers_hook", None)
        if registry is None:
            continue
        for name in (_SPLIT_HOOK, _GATHER_HOOK, _ATTENTION_HOOK, _SAME_INPUTS_HOOK):
            if registry.get_hook(name) is not None:
                registry.remove_hook(name, recurse=False)
    transformer._context_parallel_state = None


class SameInputsHook(ModelHook):
    """Before each transformer call: refuse inputs that differ between processes. Each process computes its shard
    from its own copy of the inputs, so different copies (noise drawn without a seeded generator, another prompt)
    would give a silently wrong video; a checksum of each input is compared (one small all-gather per call)."""

    def __init__(self, process_group: dist.ProcessGroup | None):
        super().__init__()
        self.process_group = process_group

    def pre_forward(self, module, *args, **kwargs):
        names = ("hidden_states", "encoder_hidden_states", "timestep")
        inputs = [kwargs[name] if name in kwargs else args[index] for index, name in enumerate(names)]
        inputs = [torch.as_tensor(value, device=inputs[0].device).double() for value in inputs]  # an int timestep too
        parts = [part for value in inputs for part in (value.sum(), value.abs().sum())]
        checksum = torch.nan_to_num(torch.stack(parts))
        gathered = [torch.empty_like(checksum) for _ in range(dist.get_world_size(self.process_group))]
        dist.all_gather(gathered, checksum, group=self.process_group)
        sums = torch.stack(gathered).view(len(gathered), len(names), 2)
        different = [name for index, name in enumerate(names) if not (sums[:, index] == sums[0, index]).all()]
        if different:  # every process sees the same checksums, so every one raises: nobody waits in a collective
            raise ValueError(
                f"Context parallelism needs the same inputs on every process; {', '.join(different)} differ. Pass "
                "the same prompts and video everywhere, and a generator seeded alike on every process "
                "(`generator=torch.Generator().manual_seed(seed)`) or the latents themselves."
            )
        return args, kwargs


# ---------------------------------------------------------------------------------------------------------------------
# Starting a launched run: `--context-parallel N` under torchrun / accelerate launch (the flag: `cli.py`)

def launched_world_size() -> int:
    """Processes the launcher started (torchrun's and accelerate's WORLD_SIZE), 1 without a launcher."""
    return int(os.environ.get("WORLD_SIZE", 1))


def check_context_parallel(degree: int | None, transformer_config: dict, device: str = "auto"):
    """Refuse, before any weights load, a degree (`context_parallel`) this checkpoint (`transformer_config`, from its
    config.json) or this launch cannot run: heads that do not divide, a degree other than the number of processes
    launched, one device named for every process. Messages are `ParameterError` templates naming `{context_parallel}`
    and `{device}`, which each front end renders in its own words (the command line as its flags)."""
    processes = launched_world_size()
    if degree is None:
        if processes > 1:
            raise ParameterError(
                "context_parallel",
                f"{processes} processes were launched, each of which would run the whole edit: pass "
                f"{{context_parallel}} {processes} to spread one edit over them (or `batch` for many videos).",
            )
        return
    if degree < 1:
        raise ParameterError("context_parallel", f"{{context_parallel}} must be at least 1, got {degree}.")
    heads = transformer_config["num_attention_heads"]
    if heads % degree:
        raise ParameterError(
            "context_parallel",
            f"{{context_parallel}} {degree} does not divide this checkpoint's {heads} attention heads, which the "
            f"processes share evenly: pass one of {working_degrees(heads)}.",
        )
    if degree != processes:
        raise ParameterError(
            "context_parallel",
            f"{{context_parallel}} {degree} but {processes} process(es) were launched: launch with `torchrun "
            f"--nproc_per_node {degree} -m cogvideox_ddim_inversion.cli ...` (or `accelerate launch --num_processes "
            f"{degree}`), or pass {{context_parallel}} {processes}.",
        )
    if degree > 1 and device not in ("auto", "cpu", "cuda"):
        raise ParameterError(
            "device",
            f"{{device}} {device} would put every process on one device: under {{context_parallel}} each process "
            "takes its own GPU (cuda:LOCAL_RANK), so pass {device} cuda or leave {device} out.",
        )


@dataclass
class ContextParallelLaunch:
    """This process's part in a context-parallel run (degree 1: a run on one process)."""

    degree: int = 1
    rank: int = 0
    device: str = "auto"

    @property
    def writes(self) -> bool:
        """Whether this process writes the outputs and prints: process 0 (every process computes all of them)."""
        return self.rank == 0

    def on_own_device(self, model_settings):
        """`model_settings` (editing.ModelSettings) with this process's device."""
        return dataclasses.replace(model_settings, device=self.device)

    def enable(self, pipe, load_info: dict):
        """Spread `pipe`'s transformer over the processes; quiet the progress bars of all but the writer."""
        load_info["context_parallel"] = self.degree
        if self.degree > 1:
            pipe.enable_context_parallel(self.degree)
            if not self.writes:
                pipe.set_progress_bar_config(disable=True)


def start_context_parallel(degree: int | None, transformer_config: dict, device: str = "auto"):
    """Check the degree (`check_context_parallel`), then join the launch's process group: gloo on the CPU
    (`device="cpu"` or no GPU), nccl on GPUs, one GPU per process. Returns this process's `ContextParallelLaunch`."""
    check_context_parallel(degree, transformer_config, device)
    if degree is None or degree == 1:
        return ContextParallelLaunch(device=device)
    rank, _, own_device = init_process_group_from_env("gloo" if device == "cpu" else None)
    if rank != 0:  # one set of loading bars
        import transformers
        from diffusers.utils import logging as diffusers_logging

        diffusers_logging.disable_progress_bar()
        transformers.utils.logging.disable_progress_bar()
    return ContextParallelLaunch(degree, rank, "cpu" if device == "cpu" else str(own_device))


# ---------------------------------------------------------------------------------------------------------------------
# Split and gather at the transformer's edges


class VideoTokenSplitHook(ModelHook):
    """Before each block: this process's shard of the RoPE tables and, before the first, of the video tokens
    (padded to a multiple of the degree); the text tokens stay whole."""

    def __init__(self, state: ContextParallelState, split_hidden_states: bool):
        super().__init__()
        self.state = state
        self.split_hidden_states = split_hidden_states

    def pre_forward(self, module, *args, **kwargs):
        # The transformer passes keywords; gradient checkpointing passes (hidden, encoder, temb, rope, kwargs).
        args = list(args)
        state = self.state
        if self.split_hidden_states:
            hidden_states = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            state.video_tokens = hidden_states.size(1)
            state.local_tokens = math.ceil(state.video_tokens / state.degree)
            hidden_states = self.shard(hidden_states, dim=1)
            if "hidden_states" in kwargs:
                kwargs["hidden_states"] = hidden_states
            else:
                args[0] = hidden_states

        in_kwargs = "image_rotary_emb" in kwargs
        rope = kwargs["image_rotary_emb"] if in_kwargs else (args[3] if len(args) > 3 else None)
        if rope is not None:
            rope = tuple(self.shard(table, dim=0) for table in rope)
            if in_kwargs:
                kwargs["image_rotary_emb"] = rope
            else:
                args[3] = rope
        return tuple(args), kwargs

    def shard(self, tensor: torch.Tensor, dim: int) -> torch.Tensor:
        state = self.state
        if state.padding:
            pad_shape = list(tensor.shape)
            pad_shape[dim] = state.padding
            tensor = torch.cat([tensor, tensor.new_zeros(pad_shape)], dim=dim)
        return tensor.narrow(dim, state.rank * state.local_tokens, state.local_tokens)


class VideoTokenGatherHook(ModelHook):
    """After `proj_out` (per-token, the narrowest tensor at the end): gather the shards and drop the padding."""

    def __init__(self, state: ContextParallelState):
        super().__init__()
        self.state = state

    def post_forward(self, module, output):
        return torch.cat(self.state.all_gather(output), dim=1)[:, : self.state.video_tokens]


# ---------------------------------------------------------------------------------------------------------------------
# Attention


class ContextParallelAttentionHook(ModelHook):
    """Replaces an attention layer's forward: runs the computation of the processor installed *now* (plain,
    reference or recorder) with the Ulysses exchange. Keyword arguments are filtered by the processor's signature,
    as `Attention.forward` does."""

    def __init__(self, state: ContextParallelState):
        super().__init__()
        self.state = state

    def new_forward(self, module, hidden_states, encoder_hidden_states=None, attention_mask=None, **kwargs):
        processor = module.processor
        if type(processor) not in (CogVideoXAttnProcessor2_0, CogVideoXRefAttnProcessor) and not isinstance(
            processor, CogVideoXTextAttentionRecorder
        ):
            raise TypeError(
                f"Context parallelism runs CogVideoXAttnProcessor2_0, CogVideoXRefAttnProcessor and "
                f"CogVideoXTextAttentionRecorder; this layer has {type(processor).__name__}. Install one of those, "
                "or `disable_context_parallel` first."
            )
        if attention_mask is not None:
            raise ValueError("Context-parallel CogVideoX attention takes no `attention_mask`; CogVideoX passes none.")
        reference_rows = kwargs.get("reference_rows", 0) if isinstance(processor, CogVideoXRefAttnProcessor) else 0
        if reference_rows and not processor.attend_to_reference:
            reference_rows = 0
        return context_parallel_attention(
            self.state,
            module,
            hidden_states,
            encoder_hidden_states,
            image_rotary_emb=kwargs.get("image_rotary_emb"),
            reference_rows=reference_rows,
            reference_weight=kwargs.get("reference_weight", 1.0),
            recorder=processor if isinstance(processor, CogVideoXTextAttentionRecorder) else None,
        )


def context_parallel_attention(
    state: ContextParallelState,
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor,
    image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
    reference_rows: int = 0,
    reference_weight: float = 1.0,
    recorder: CogVideoXTextAttentionRecorder | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CogVideoX joint attention for a process holding `hidden_states`' shard of the video tokens (`[B, n, C]`) and
    all text tokens (`[B, L, C]`); returns `(video shard, text)` outputs as `CogVideoXAttnProcessor2_0` does."""
    batch_size = hidden_states.size(0)
    text_seq_length = encoder_hidden_states.size(1)
    heads, degree = attn.heads, state.degree
    local_heads = heads // degree
    head_slice = slice(state.rank * local_heads, (state.rank + 1) * local_heads)
    sample_rows = batch_size - reference_rows
    if reference_rows and (reference_rows < 0 or sample_rows <= 0 or sample_rows % reference_rows != 0):
        raise ValueError(
            f"`reference_rows={reference_rows}` does not fit a batch of {batch_size} rows: the batch must hold "
            "S sample rows followed by R reference rows, with S a positive multiple of R."
        )

    # 1. Projections, QK norms and RoPE on this process's tokens, all heads.
    joint = torch.cat([encoder_hidden_states, hidden_states], dim=1)
    qkv = []
    for projection, norm in ((attn.to_q, attn.norm_q), (attn.to_k, attn.norm_k), (attn.to_v, None)):
        states = projection(joint)
        states = states.unflatten(2, (heads, states.size(-1) // heads)).transpose(1, 2)  # [B, H, L + n, d]
        if norm is not None:
            states = norm(states)
        qkv.append(states)
    if image_rotary_emb is not None:
        for index in (0, 1):  # queries and keys; CogVideoX attention is self-attention
            text, video = qkv[index][:, :, :text_seq_length], qkv[index][:, :, text_seq_length:]
            qkv[index] = torch.cat([text, apply_rotary_emb(video, image_rotary_emb)], dim=2)

    # 2. Token shards -> head shards: one all-to-all for q, k and v together. Text heads are sliced locally.
    video = torch.stack([states[:, :, text_seq_length:] for states in qkv])  # [3, B, H, n, d]
    video = state.all_to_all(video.unflatten(2, (degree, local_heads)).movedim(2, 0))  # [N, 3, B, h, n, d]
    video = video.movedim(0, 3).flatten(3, 4)[:, :, :, : state.video_tokens]  # [3, B, h, N * n - padding, d]
    query, key, value = (
        torch.cat([states[:, head_slice, :text_seq_length], video[index]], dim=2) for index, states in enumerate(qkv)
    )
    state.exchanges += 1

    # 3. Attention over whole rows for this process's heads: what the installed processor computes.
    if recorder is not None and recorder.recording:
        _record_gathered(recorder, state, query, key, text_seq_length)
    if reference_rows:
        out = reference_attention(query, key, value, reference_rows, reference_weight)
    else:
        out = F.scaled_dot_product_attention(query, key, value, dropout_p=0.0, is_causal=False)

    # 4. Head shards -> token shards (video, padded back) and all heads of the text (all-gather).
    text_out, video_out = out[:, :, :text_seq_length], out[:, :, text_seq_length:]
    if state.padding:
        video_out = F.pad(video_out, (0, 0, 0, state.padding))
    video_out = state.all_to_all(video_out.unflatten(2, (degree, state.local_tokens)).movedim(2, 0))
    video_out = video_out.movedim(0, 1).flatten(1, 2)  # [B, H, n, d], heads in rank order
    out = torch.cat([torch.cat(state.all_gather(text_out), dim=1), video_out], dim=2).transpose(1, 2).flatten(2, 3)

    out = attn.to_out[1](attn.to_out[0](out))
    encoder_hidden_states, hidden_states = out.split([text_seq_length, out.size(1) - text_seq_length], dim=1)
    return hidden_states, encoder_hidden_states


def _record_gathered(recorder: CogVideoXTextAttentionRecorder, state, query, key, text_seq_length: int):
    """The recorder's head-averaged map from this process's heads, averaged over processes (equal head counts), so
    every process holds the map of all heads."""
    previous, recorder.attention = recorder.attention, None
    recorder._record(query, key, text_seq_length)
    attention = state.all_reduce_mean(recorder.attention)
    recorder.attention = attention if previous is None else previous + attention
