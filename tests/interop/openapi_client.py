"""A Python client generated from the broker's own OpenAPI document, by
openapi-python-client (pinned in requirements.txt), publishes and reads
back: what a Python service does with fanlog's HTTP API and no hand-written
client.

Usage: openapi_client.py BASE_URL TOKEN WORK_DIR

Downloads BASE_URL/openapi.json, generates the client package into
WORK_DIR, imports it, publishes two messages to topic `py-generated` (bytes,
then a structured CloudEvent) and a batch of two, reads the topic back
from seq 0, lists the
topics, and prints one JSON line: {"published": [seqs], "read": [{seq,
data, content_type}], "topics": [names]}.
"""

import io
import json
import os
import subprocess
import sys
import urllib.request

base, token, work = sys.argv[1], sys.argv[2], sys.argv[3]

spec = os.path.join(work, "openapi.json")
with urllib.request.urlopen(base + "/openapi.json") as r, open(spec, "wb") as f:
    f.write(r.read())
generated = os.path.join(work, "fanlog_api")
subprocess.run(
    [
        sys.executable,
        "-m",
        "openapi_python_client",
        "generate",
        "--path",
        spec,
        "--output-path",
        generated,
        "--meta",
        "none",
    ],
    check=True,
    stdout=sys.stderr,
)
sys.path.insert(0, work)

from fanlog_api import AuthenticatedClient  # noqa: E402
from fanlog_api.api.topics import (  # noqa: E402
    list_topics,
    publish_batch,
    publish_message,
    read_messages,
)
from fanlog_api.models import (  # noqa: E402
    BatchJson,
    CloudEventJson,
    Page,
    PublishedBatchJson,
    PublishedJson,
)
from fanlog_api.types import File  # noqa: E402

client = AuthenticatedClient(base_url=base, token=token)
topic = "py-generated"
published = []
first = publish_message.sync(
    topic, client=client, body=File(payload=io.BytesIO(b"hello from python"))
)
assert isinstance(first, PublishedJson), first
published.append(first.seq)
event = CloudEventJson.from_dict(
    {
        "specversion": "1.0",
        "id": "py-1",
        "source": "/generated/python",
        "type": "com.example.generated",
        "datacontenttype": "application/json",
        "data": {"n": 1},
    }
)
second = publish_message.sync(topic, client=client, body=event)
assert isinstance(second, PublishedJson), second
published.append(second.seq)

batch = publish_batch.sync(
    topic,
    client=client,
    body=BatchJson.from_dict(
        {"messages": [{"data": "batched 0"}, {"data": {"n": 2}, "idempotency_key": "py-b1"}]}
    ),
)
assert isinstance(batch, PublishedBatchJson), batch
published.extend(batch.seqs)

page = read_messages.sync(topic, client=client, from_=0)
assert isinstance(page, Page), page
topics = list_topics.sync(client=client)
print(
    json.dumps(
        {
            "published": published,
            "read": [
                {"seq": m.seq, "data": m.data, "content_type": m.content_type}
                for m in page.messages
            ],
            "next": page.next_,
            "topics": [t.name for t in topics],
        }
    ),
    flush=True,
)
