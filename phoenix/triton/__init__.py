"""Serving on NVIDIA Triton without Docker: `server` starts the real `tritonserver` binary that
the nvidia-pytriton wheel carries (Python backend only) on a classic model repository.

    from phoenix.triton.server import TritonServer

    with TritonServer(repository, http_port=0, grpc_port=0, metrics_port=0) as server:
        print(server.endpoints.http)
"""
