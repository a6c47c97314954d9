"""Tasks: prompts, splits and rewards; one module per task family."""
