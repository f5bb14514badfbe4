"""Search over the transducer's outputs: greedy and beam search, LM fusion, rescoring of finals.

Depends on ``server.model`` (the networks) and nothing above it; the engine calls it.
"""
