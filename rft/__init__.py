"""rft: reinforcement fine-tuning for vision-language models."""
