"""The paper's models: configurations, the two-stream encoders, losses and one-file checkpoints.

Importing this package is cheap (torch is imported when a model is built or a checkpoint read)::

    from encoders import create_model, load_checkpoint
    model = create_model("m5-attention-linear-infonce", width=0.125, image_size=64, seed=0)
"""

from encoders.checkpoint import CheckpointInfo, file_sha256, load_checkpoint, save_checkpoint
from encoders.config import AudioConfig, ImageConfig, ModelConfig
from encoders.errors import CheckpointError, ConfigError, SoundlibError
from encoders.registry import MODEL_NAMES, build_model, create_model, get_config, model_names

__all__ = [
    "AudioConfig", "ImageConfig", "ModelConfig", "CheckpointInfo", "CheckpointError", "ConfigError", "SoundlibError",
    "MODEL_NAMES", "model_names", "get_config", "create_model", "build_model",
    "load_checkpoint", "save_checkpoint", "file_sha256",
]
