"""Development sets of real speech (for measuring only, never for training)."""
