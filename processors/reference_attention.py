"""Reference attention for CogVideoX: sample rows also attend to the keys/values of an inverted reference video."""

import math

import torch
import torch.nn.functional as F
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb


def reference_attention(
    query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, reference_rows: int, reference_weight: float = 1.0
) -> torch.Tensor:
    """Attention of `[S + R, heads, L, d]` queries/keys/values (after RoPE) laid out as `S` sample rows then `R`
    reference rows: sample row `j` reads `[its keys ; keys of reference row j % R]`, reference rows read themselves.
    Also used by the context-parallel processor on whole rows after its all-to-all."""
    sample_rows = query.size(0) - reference_rows
    query_sample, query_reference = query.split([sample_rows, reference_rows])
    key_sample, key_reference = key.split([sample_rows, reference_rows])
    value_sample, value_reference = value.split([sample_rows, reference_rows])

    # Sample row j reads reference row j % R: repeat (not interleave) matches CFG's [uncond; cond] layout.
    repeats = sample_rows // reference_rows
    key_joint = torch.cat([key_sample, key_reference.repeat(repeats, 1, 1, 1)], dim=2)
    value_joint = torch.cat([value_sample, value_reference.repeat(repeats, 1, 1, 1)], dim=2)

    joint_mask = None
    if reference_weight != 1.0:
        # log(weight) on the reference columns scales their softmax mass by `weight` before renormalising.
        seq_length = key_sample.size(2)
        reference_bias = math.log(reference_weight) if reference_weight > 0 else float("-inf")
        joint_mask = query.new_zeros(1, 2 * seq_length)
        joint_mask[:, seq_length:] = reference_bias

    out_sample = F.scaled_dot_product_attention(query_sample, key_joint, value_joint, attn_mask=joint_mask)
    out_reference = F.scaled_dot_product_attention(query_reference, key_reference, value_reference)
    return torch.cat([out_sample, out_reference])


class CogVideoXRefAttnProcessor:
    r"""
    Attention processor for reference-guided CogVideoX sampling (DDIM-inversion editing).

    Follows the calling convention of [`~models.attention_processor.CogVideoXAttnProcessor2_0`] and is installed the
    same way: `pipe.transformer.set_attn_processor(CogVideoXRefAttnProcessor())`. It is stateless: the batch layout
    comes through `attention_kwargs`.

    The batch holds `S` sample rows followed by `reference_rows = R` reference rows (`S` a multiple of `R`). Sample
    row `j` attends to `[its own keys/values ; keys/values of reference row j % R]` (text and video tokens of both),
    while reference rows attend only to themselves. RoPE is applied to each row's video tokens separately, so a
    reference token carries the same position as the sample token at the same place. With one reference row per
    video and classifier-free guidance (`S = 2B`, `R = B`), both guidance branches share the reference row.

    With `reference_rows=0` (the default) it computes exactly what `CogVideoXAttnProcessor2_0` computes.

    Args:
        attend_to_reference (`bool`, defaults to `True`):
            `False` makes this layer ignore the reference: every row, reference rows included, attends only to itself
            (the reference rows still pass through, so later layers can read them). Used to restrict reference
            attention to some transformer blocks.

    Args passed through `attention_kwargs`:
        reference_rows (`int`, defaults to 0):
            Number of reference rows at the end of the batch.
        reference_weight (`float`, defaults to 1.0):
            Multiplies the attention mass that sample queries give to reference keys (added as `log(weight)` to
            their logits). 1.0 is plain joint attention; below 1 the reference pulls less, above 1 more; 0 ignores
            the reference while the reference rows are still computed.
    """

    def __init__(self, attend_to_reference: bool = True):
        self.attend_to_reference = attend_to_reference
        self._plain = CogVideoXAttnProcessor2_0()

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: tuple[torch.Tensor, torch.Tensor] | None = None,
        reference_rows: int = 0,
        reference_weight: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not reference_rows or not self.attend_to_reference:
            return self._plain(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

        batch_size = hidden_states.size(0)
        sample_rows = batch_size - reference_rows
        if reference_rows < 0 or sample_rows <= 0 or sample_rows % reference_rows != 0:
            raise ValueError(
                f"`reference_rows={reference_rows}` does not fit a batch of {batch_size} rows: the batch must hold "
                "S sample rows followed by R reference rows, with S a positive multiple of R."
            )
        if attention_mask is not None:
            raise ValueError("CogVideoXRefAttnProcessor does not take an `attention_mask`; CogVideoX passes none.")

        text_seq_length = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)

        query = attn.to_q(hidden_states)
        key = attn.to_k(hidden_states)
        value = attn.to_v(hidden_states)

        head_dim = key.shape[-1] // attn.heads
        query = query.unflatten(2, (attn.heads, head_dim)).transpose(1, 2)
        key = key.unflatten(2, (attn.heads, head_dim)).transpose(1, 2)
        value = value.unflatten(2, (attn.heads, head_dim)).transpose(1, 2)

        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)

        # Every row is one group of video tokens: RoPE per row gives reference tokens the positions of the sample's.
        if image_rotary_emb is not None:
            query = torch.cat(
                [query[:, :, :text_seq_length], apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)],
                dim=2,
            )
            key = torch.cat(
                [key[:, :, :text_seq_length], apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)], dim=2
            )

        hidden_states = reference_attention(query, key, value, reference_rows, reference_weight)
        hidden_states = hidden_states.transpose(1, 2).flatten(2, 3)

        hidden_states = attn.to_out[0](hidden_states)
        hidden_states = attn.to_out[1](hidden_states)

        encoder_hidden_states, hidden_states = hidden_states.split(
            [text_seq_length, hidden_states.size(1) - text_seq_length], dim=1
        )
        return hidden_states, encoder_hidden_states
