"""gRPC API layer: servicer, validation, audio decoding, health, reflection, draining."""
