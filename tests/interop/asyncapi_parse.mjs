// Reads the broker's /asyncapi.json with the official AsyncAPI parser
// (`@asyncapi/parser`, pinned in package.json), which validates the
// document against the specification and its rules.
//
// Usage: node asyncapi_parse.mjs URL
//
// Prints one JSON object: the errors and warnings the parser found, and the
// servers, channels and operations it read.
import { Parser } from "@asyncapi/parser";

const url = process.argv[2];
const text = await (await fetch(url)).text();
const { document, diagnostics } = await new Parser().parse(text);
const said = (severity) =>
  diagnostics.filter((d) => d.severity === severity).map((d) => `${d.code}: ${d.message} at ${d.path.join(".")}`);
const result = { errors: said(0), warnings: said(1) };
if (document) {
  result.version = document.version();
  result.servers = document.servers().all().map((s) => s.protocol());
  result.channels = document.channels().all().map((c) => c.address());
  result.operations = document.operations().all().map((o) => o.action());
}
process.stdout.write(JSON.stringify(result) + "\n");
