"""Libraries built on mpirt's public API: ``tune`` (hyperparameter search) and ``rl`` (reinforcement learning)."""
