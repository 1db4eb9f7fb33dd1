"""Locustfile: Triton's ranker directly (`phoenix loadtest --target triton`)."""

from loadtest import request_log
from loadtest.shapes import shape_from_env
from loadtest.triton_user import TritonRankerUser

__all__ = ["TritonRankerUser"]

request_log.install()

Shape = shape_from_env()
if Shape is None:
    del Shape
