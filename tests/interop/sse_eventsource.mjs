// An SSE subscriber on the `eventsource` npm package (pinned in
// package.json), the EventSource of Node programs.
//
// Usage: node sse_eventsource.mjs URL [EVENT_TYPE...]
//
// Prints one JSON line per event it dispatches ({"type", "id", "data"}),
// per open ({"open": true}) and per error ({"error": ...}), until killed.
// The library reconnects by itself, with Last-Event-ID.
import { EventSource } from "eventsource";

const [url, ...types] = process.argv.slice(2);
const out = (o) => process.stdout.write(JSON.stringify(o) + "\n");
const es = new EventSource(url);
es.onopen = () => out({ open: true });
es.onerror = (e) => out({ error: String(e.message ?? e.type) });
for (const type of ["message", "gap", ...types]) {
  es.addEventListener(type, (e) => out({ type, id: e.lastEventId, data: e.data }));
}
// The library unrefs its reconnect timer (a page or server keeps the
// process alive by other means); this script has nothing else, so it holds
// the process open itself.
setInterval(() => {}, 1 << 30);
