"""A WebSocket client on the `websockets` library (pinned in
requirements.txt).

Usage: websockets_client.py WS_URL

Subscribes from the URL's position, publishes a text and a JSON message
with request ids, and prints one JSON object: every frame received until
both acks and both messages came back.
"""

import json
import sys

from websockets.sync.client import connect

frames = []
with connect(sys.argv[1], open_timeout=10) as ws:
    ws.send(json.dumps({"op": "publish", "data": "from python", "id": "a"}))
    ws.send(json.dumps({"op": "publish", "data": {"n": 2}, "content_type": "application/json", "id": "b"}))
    acks = mine = 0
    while acks < 2 or mine < 2:
        frame = json.loads(ws.recv(timeout=20))
        frames.append(frame)
        if frame.get("op") == "ack":
            acks += 1
        elif frame.get("data") in ("from python", '{"n":2}', '{"n": 2}'):
            mine += 1
print(json.dumps(frames))
