"""The five CogVideoX families the tiny checkpoints mirror: their structure and scheduler settings (torch-free, so the
command line offers the names without importing torch)."""

VARIANTS = {
    "cogvideox-2b": {
        "hub_id": "THUDM/CogVideoX-2b",
        "transformer": {
            "in_channels": 16,
            "patch_size_t": None,
            "patch_bias": True,
            "ofs_embed_dim": None,
            "use_rotary_positional_embeddings": False,
            "use_learned_positional_embeddings": False,
        },
        "vae_scaling_factor": 1.15258426,
        "snr_shift_scale": 3.0,
    },
    "cogvideox-5b": {
        "hub_id": "THUDM/CogVideoX-5b",
        "transformer": {
            "in_channels": 16,
            "patch_size_t": None,
            "patch_bias": True,
            "ofs_embed_dim": None,
            "use_rotary_positional_embeddings": True,
            "use_learned_positional_embeddings": False,
        },
        "vae_scaling_factor": 0.7,
        "snr_shift_scale": 1.0,
    },
    "cogvideox-5b-i2v": {
        "hub_id": "THUDM/CogVideoX-5b-I2V",
        "transformer": {
            "in_channels": 32,
            "patch_size_t": None,
            "patch_bias": True,
            "ofs_embed_dim": None,
            "use_rotary_positional_embeddings": True,
            "use_learned_positional_embeddings": True,
        },
        "vae_scaling_factor": 0.7,
        "snr_shift_scale": 1.0,
    },
    "cogvideox1.5-5b": {
        "hub_id": "THUDM/CogVideoX1.5-5B",
        "transformer": {
            "in_channels": 16,
            "patch_size_t": 2,
            "patch_bias": False,
            "ofs_embed_dim": None,
            "use_rotary_positional_embeddings": True,
            "use_learned_positional_embeddings": False,
        },
        "vae_scaling_factor": 0.7,
        "snr_shift_scale": 1.0,
        "vae_invert_scale_latents": True,
    },
    "cogvideox1.5-5b-i2v": {
        "hub_id": "THUDM/CogVideoX1.5-5B-I2V",
        "transformer": {
            "in_channels": 32,
            "patch_size_t": 2,
            "patch_bias": False,
            "ofs_embed_dim": 16,
            "use_rotary_positional_embeddings": True,
            "use_learned_positional_embeddings": False,
        },
        "vae_scaling_factor": 0.7,
        "snr_shift_scale": 1.0,
        "vae_invert_scale_latents": True,
    },
}
