"""Tasks: env factories, observation adapters, metrics and scripted experts."""
