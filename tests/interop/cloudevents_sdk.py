"""CloudEvents interop with the official Python SDK (pinned in tests/interop/requirements.txt).

Usage: cloudevents_sdk.py BROKER_HTTP_ADDR

Builds events with the SDK, publishes them to a running broker in both HTTP
modes, lets two hooks (binary and structured delivery) deliver them to a
receiver here, parses each delivery with the SDK's own `from_http`, and
prints one JSON line: what the SDK read back. The Rust test compares it with
what was sent.
"""

import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

from cloudevents.conversion import to_binary, to_structured
from cloudevents.http import CloudEvent, from_http

broker = sys.argv[1]
received = {"binary": [], "structured": []}


class Hook(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        event = from_http(headers, body)
        attrs = {k: v for k, v in event.get_attributes().items()}
        data = event.data
        if isinstance(data, (bytes, bytearray)):
            data = data.decode()
        received[self.path.strip("/")].append({"attributes": attrs, "data": data})
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


server = HTTPServer(("127.0.0.1", 0), Hook)
threading.Thread(target=server.serve_forever, daemon=True).start()
hook_base = f"http://127.0.0.1:{server.server_address[1]}"


def post(path, body, headers):
    req = urllib.request.Request(f"http://{broker}{path}", data=body, headers=headers, method="POST")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


for mode in ["binary", "structured"]:
    post("/hooks", json.dumps({"topic": "sdk", "url": f"{hook_base}/{mode}", "delivery": mode}).encode(),
         {"content-type": "application/json"})

# Structured in: JSON data with no datacontenttype, an integer and a boolean
# extension, a time with an offset (the SDK writes +00:00).
structured = CloudEvent(
    {"type": "order.created", "source": "/shop", "id": "S-1", "count": 5, "rush": True},
    {"total": 12},
)
headers, body = to_structured(structured)
post("/topics/sdk/messages", body, dict(headers))
# Binary in: text data.
binary = CloudEvent(
    {"type": "order.shipped", "source": "/shop", "id": "B-1", "subject": "parcel-7",
     "datacontenttype": "text/plain"},
    "on its way",
)
# Text data as text (the SDK's default marshaller would JSON-encode it).
headers, body = to_binary(binary, data_marshaller=lambda d: d.encode())
post("/topics/sdk/messages", body, {k: str(v) for k, v in headers.items()})

deadline = time.time() + 20
while time.time() < deadline and (len(received["binary"]) < 2 or len(received["structured"]) < 2):
    time.sleep(0.05)
print(json.dumps({"sent_time": structured["time"], "received": received}))
