"""Reads a /metrics page with the official Prometheus Python client's
text-format parser (`prometheus-client`, pinned in requirements.txt).

Usage: prometheus_parse.py URL

Prints one JSON object: each metric family's type and samples.
"""

import json
import sys
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

with urllib.request.urlopen(sys.argv[1]) as resp:
    content_type = resp.headers.get("content-type")
    text = resp.read().decode("utf-8")
families = {
    f.name: {"type": f.type, "samples": [[s.name, s.labels, s.value] for s in f.samples]}
    for f in text_string_to_metric_families(text)
}
print(json.dumps({"content_type": content_type, "families": families}))
