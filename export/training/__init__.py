"""Training and evaluation of the ranker and the retrieval towers on a synthetic world."""
