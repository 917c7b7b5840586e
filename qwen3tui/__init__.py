"""qwen3tui: a terminal chat app for Qwen3 models on its own PyTorch inference core."""

__version__ = "0.1.0"
