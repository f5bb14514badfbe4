"""t-SOT data: serialization of two talkers' tokens, CTC forced alignment, two-talker mixtures, cpWER."""
