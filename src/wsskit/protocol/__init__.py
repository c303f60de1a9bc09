"""The sans-I/O core of RFC 6455: bytes in, events out; events in, bytes out.

Nothing here imports asyncio, socket, ssl, threading or time.
"""
