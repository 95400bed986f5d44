"""Qwen3 fine-tuning kit."""
