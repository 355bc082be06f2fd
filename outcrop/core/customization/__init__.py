"""Model customization and batch inference: LoRA fine-tuning, custom and imported models, batch and async jobs."""
