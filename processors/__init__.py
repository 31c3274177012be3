from .reference_attention import CogVideoXRefAttnProcessor
from .text_attention import CogVideoXTextAttentionRecorder


__all__ = ["CogVideoXRefAttnProcessor", "CogVideoXTextAttentionRecorder"]
