"""Publishing trained models: Hugging Face Hub folders and their model cards."""
