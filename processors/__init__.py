from .reference_attention import CogVideoXRefAttnProcessor


__all__ = ["CogVideoXRefAttnProcessor"]
