"""Serve a trained policy to robots: a websocket server (msgpack, no pickle) and its client.

    scorepolicy serve runs/pusht --port 8765             # loopback by default
    from scorepolicy import PolicyClient                 # client = PolicyClient("ws://127.0.0.1:8765")

Needs the `serve` extra (websockets, msgpack). The protocol is in `protocol.py`, the wire format in `wire.py`.
"""

from scorepolicy.serving.client import PolicyClient, ServerError
from scorepolicy.serving.config import ServeConfig, is_loopback, read_token
from scorepolicy.serving.protocol import OBS_KEY, PROTOCOL_VERSION
from scorepolicy.serving.server import PolicyServer, running_server, serve

__all__ = [
    "OBS_KEY",
    "PROTOCOL_VERSION",
    "PolicyClient",
    "PolicyServer",
    "ServeConfig",
    "ServerError",
    "is_loopback",
    "read_token",
    "running_server",
    "serve",
]
