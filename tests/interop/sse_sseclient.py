"""An SSE subscriber on `sseclient-py` (pinned in requirements.txt), the
event-stream parser of many Python programs, over urllib.

Usage: sse_sseclient.py URL

Prints one JSON line per event it dispatches ({"type", "id", "data"}), per
open ({"open": true}) and per error ({"error": ...}), until killed. The
library only parses; like every SSE client this loop reconnects after the
stream ends, with Last-Event-ID set to the last id seen.
"""

import json
import sys
import time
import urllib.request

import sseclient

url = sys.argv[1]
last_id = None


def out(o):
    print(json.dumps(o), flush=True)


while True:
    headers = {"Accept": "text/event-stream"}
    if last_id is not None:
        headers["Last-Event-ID"] = last_id
    retry = 1.0
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers)) as resp:
            out({"open": True})
            for event in sseclient.SSEClient(resp).events():
                if event.retry:
                    retry = int(event.retry) / 1000
                if event.id:
                    last_id = event.id
                out({"type": event.event, "id": event.id, "data": event.data})
        out({"error": "the stream ended"})
    except Exception as e:  # a refused or dropped connection: retry
        out({"error": str(e)})
    time.sleep(retry)
