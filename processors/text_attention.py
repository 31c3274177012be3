"""Recording how much CogVideoX's video tokens attend to chosen text tokens, for automatic edit masks."""

import torch
from diffusers.models.attention_processor import Attention, CogVideoXAttnProcessor2_0
from diffusers.models.embeddings import apply_rotary_emb


class CogVideoXTextAttentionRecorder(CogVideoXAttnProcessor2_0):
    r"""
    An attention processor that returns exactly what [`~models.attention_processor.CogVideoXAttnProcessor2_0`]
    returns (it calls it) and, while `recording` is on, adds up the joint attention that each video token gives to chosen text
    tokens (the tokens of some words of the prompt), averaged over heads.

    CogVideoX attends jointly over `[text tokens ; video tokens]`: for a video query, the attention on a text key is
    its softmax weight among *all* keys, text and video. SDPA does not return these weights, so they are computed
    beside it from the same queries and keys: per chunk of video queries, the logits against every key give the
    softmax normaliser, and only the chosen text keys' weights are kept. This costs about one extra `Q K^T` per
    recorded layer and forward pass, in chunks of at most `max_chunk_elements` logits (memory stays bounded at real
    sizes: 17550 video tokens and 48 heads for CogVideoX-5B).

    Args:
        text_token_weights (`torch.Tensor` of shape `[B, L]`):
            Per video, the weight of each text token (1 on the tokens of the words, 0 elsewhere). The recorded rows are
            the last `B` rows of each batch: with classifier-free guidance (`[uncond ; cond]`), the conditional ones.
        max_chunk_elements (`int`, defaults to `2**26`):
            Most logits held at once (256 MiB in float32).

    After a run, `attention` (`[B, N]`, float32, one value per video token in the transformer's token order) holds the
    sum over recorded calls and `calls` their number.
    """

    def __init__(self, text_token_weights: torch.Tensor, max_chunk_elements: int = 2**26):
        super().__init__()
        self.text_token_weights = text_token_weights
        self.max_chunk_elements = max_chunk_elements
        self.recording = True
        self.attention = None
        self.calls = 0

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        image_rotary_emb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        # The attention itself is diffusers' (as CogVideoXRefAttnProcessor delegates); while recording, the queries and
        # keys are projected again beside it (two linear layers per recorded layer and pass), after RoPE as there.
        if self.recording:
            self._record(*self._queries_and_keys(attn, hidden_states, encoder_hidden_states, image_rotary_emb))
        return super().__call__(attn, hidden_states, encoder_hidden_states, attention_mask, image_rotary_emb)

    @staticmethod
    def _queries_and_keys(attn: Attention, hidden_states, encoder_hidden_states, image_rotary_emb):
        """`[B, heads, L + N, head_dim]` queries and keys over `[text ; video]` tokens, as CogVideoXAttnProcessor2_0
        makes them (normalised, RoPE on the video tokens), and the text length."""
        text_seq_length = encoder_hidden_states.size(1)
        tokens = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        query, key = attn.to_q(tokens), attn.to_k(tokens)
        head_dim = key.shape[-1] // attn.heads
        query = query.unflatten(2, (attn.heads, head_dim)).transpose(1, 2)
        key = key.unflatten(2, (attn.heads, head_dim)).transpose(1, 2)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if image_rotary_emb is not None:
            query[:, :, text_seq_length:] = apply_rotary_emb(query[:, :, text_seq_length:], image_rotary_emb)
            if not attn.is_cross_attention:
                key[:, :, text_seq_length:] = apply_rotary_emb(key[:, :, text_seq_length:], image_rotary_emb)
        return query, key, text_seq_length

    @torch.no_grad()
    def _record(self, query: torch.Tensor, key: torch.Tensor, text_seq_length: int):
        weights = self.text_token_weights
        videos = weights.shape[0]
        if query.shape[0] < videos or weights.shape[1] != text_seq_length:
            raise ValueError(
                f"The recorder has text-token weights for {videos} videos of {weights.shape[1]} tokens, but the "
                f"attention sees {query.shape[0]} rows of {text_seq_length} text tokens."
            )
        query, key = query[-videos:], key[-videos:].float()
        heads, keys = query.shape[1], key.shape[2]
        video_queries = query[:, :, text_seq_length:]
        weights = weights.to(device=query.device, dtype=torch.float32)[:, None, :, None]  # [B, 1, L, 1]
        scale = query.shape[-1] ** -0.5
        chunk = max(1, self.max_chunk_elements // (videos * heads * keys))
        totals = []
        for start in range(0, video_queries.shape[2], chunk):
            logits = (video_queries[:, :, start : start + chunk].float() * scale) @ key.transpose(-1, -2)
            text_logits = logits[..., :text_seq_length] - logits.logsumexp(dim=-1, keepdim=True)
            totals.append((text_logits.exp() @ weights).squeeze(-1).mean(dim=1))  # [B, chunk], heads averaged
        attention = torch.cat(totals, dim=1)
        self.attention = attention if self.attention is None else self.attention + attention
        self.calls += 1
