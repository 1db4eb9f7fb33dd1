"""The lightweight request path (docs/DESIGN.md §2): Thunder, ANN retrieval, the in-network
merge, filters, batched scoring calls to Triton, the ranking arithmetic and the HTTP API.

Never imports PyTorch: it talks to Triton, NumPy and the ANN library. Built in a later issue; the
shared pieces it will use already live in `phoenix` (configs, ranking weights, hashing, features).
"""
