"""Our lean decoder forward passes (Gemma-3 text, Qwen3) over packed sequences."""

from harrier.models.config import SUPPORTED_MODEL_TYPES, DecoderConfig, decoder_config
from harrier.models.decoder import Decoder

__all__ = ["SUPPORTED_MODEL_TYPES", "Decoder", "DecoderConfig", "decoder_config"]
