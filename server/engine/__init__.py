"""Batching engine: per-stream sessions, scheduler, model worker, slot pool, endpointing."""
