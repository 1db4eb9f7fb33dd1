"""Locustfile: the feed service (`phoenix loadtest --target feed`)."""

from loadtest import request_log
from loadtest.feed_user import FeedUser
from loadtest.shapes import shape_from_env

__all__ = ["FeedUser"]

request_log.install()

Shape = shape_from_env()
if Shape is None:
    del Shape
