"""Whisper's pretrained encoder for our models: read CTranslate2 (faster-whisper) and openai-whisper
checkpoints and convert the encoder to our safetensors naming (``asr-train convert-whisper``)."""
