from redis_server import redis_server  # noqa: F401  (a real redis-server per test: tests/redis_server.py)
