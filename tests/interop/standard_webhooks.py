"""A webhook receiver that checks every delivery with the official
Standard Webhooks verifier (`standardwebhooks`, pinned in requirements.txt).

Usage: standard_webhooks.py

Prints {"url": ...} first, then reads the hook's secret (`whsec_...`) from
a line of stdin, then prints one JSON line per delivery: its id, whether
the library verified it, whether a tampered copy (one byte added) would
verify too, and what `verify` returned (the parsed JSON body).
"""

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks.webhooks import Webhook, WebhookVerificationError

class Receiver(BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        headers = {k.lower(): v for k, v in self.headers.items()}
        seen = {"id": headers.get("webhook-id"), "content_type": headers.get("content-type")}
        try:
            is_json = "json" in (seen["content_type"] or "")
            seen["payload"] = hook.verify(body, headers, json_parse=is_json)
            seen["verified"] = True
        except WebhookVerificationError as e:
            seen["verified"] = False
            seen["why"] = str(e)
        try:
            hook.verify(body + b" ", headers, json_parse=False)
            seen["tampered_verified"] = True
        except WebhookVerificationError:
            seen["tampered_verified"] = False
        print(json.dumps(seen), flush=True)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
print(json.dumps({"url": f"http://127.0.0.1:{server.server_port}/hook"}), flush=True)
hook = Webhook(sys.stdin.readline().strip())
server.serve_forever()
