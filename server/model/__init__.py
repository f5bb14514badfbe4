"""The Conformer-Transducer: configuration, front end, streaming encoder, decoder, checkpoints."""
