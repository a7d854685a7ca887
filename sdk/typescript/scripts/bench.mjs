// Publishing over HTTP, three ways, against a running broker, in one
// sitting: `publish` one message per request (awaited in order, the
// baseline), `publishBatch` (POST /topics/{t}/batch), and a producer fed
// by concurrent `send`s. Prints progress on stderr, then one JSON line with
// each way's messages per second and its ratio to the baseline; writes an
// HTML bar chart next to it.
//
//   npm run build && node scripts/bench.mjs http://127.0.0.1:7480 [TOKEN] [COUNT] [SIZE]

import { writeFileSync } from "node:fs";
import { Client } from "../dist/index.js";

const [url = "http://127.0.0.1:7480", token, count = "20000", size = "256"] = process.argv.slice(2);
const COUNT = Number(count);
const payload = "x".repeat(Number(size));
const c = new Client({ url, token });
const run = `bench-${Date.now().toString(36)}`;

/** Runs `body(report)` and returns messages per second. */
async function measure(name, n, body) {
  let done = 0;
  const tick = setInterval(() => process.stderr.write(`\r${name}: ${done}/${n}`), 500);
  const t0 = performance.now();
  await body((k) => (done += k));
  const secs = (performance.now() - t0) / 1000;
  clearInterval(tick);
  process.stderr.write(`\r${name}: ${n}/${n} in ${secs.toFixed(2)} s\n`);
  return n / secs;
}

// One request per message is slow: a tenth of the count is enough to rate it.
const single = Math.max(1, Math.floor(COUNT / 10));
const rates = {};
rates.publish = await measure("publish, one per request", single, async (done) => {
  for (let i = 0; i < single; i++) {
    await c.publish(`${run}-single`, payload);
    done(1);
  }
});
rates.publishBatch = await measure("publishBatch", COUNT, async (done) => {
  const step = 1000;
  for (let at = 0; at < COUNT; at += step) {
    const n = Math.min(step, COUNT - at);
    await c.publishBatch(`${run}-batch`, Array(n).fill(payload));
    done(n);
  }
});
rates.producer = await measure("producer, concurrent sends", COUNT, async (done) => {
  const p = c.producer(`${run}-producer`);
  const window = 5000;
  const pending = new Set();
  for (let i = 0; i < COUNT; i++) {
    const s = p.send(payload).then(() => {
      pending.delete(s);
      done(1);
    });
    pending.add(s);
    if (pending.size >= window) await Promise.race(pending);
  }
  await Promise.all(pending);
});

const result = { count: COUNT, size: Number(size), msgs_per_s: {}, vs_publish: {} };
for (const [k, v] of Object.entries(rates)) {
  result.msgs_per_s[k] = Math.round(v);
  result.vs_publish[k] = Number((v / rates.publish).toFixed(1));
}
const max = Math.max(...Object.values(rates));
const bars = Object.entries(rates)
  .map(([k, v], i) => {
    const w = Math.max(1, Math.round((v / max) * 500));
    const y = 20 + i * 40;
    return `<text x="0" y="${y + 18}">${k}</text><rect x="130" y="${y}" width="${w}" height="26" fill="#4a7"/>` +
      `<text x="${140 + w}" y="${y + 18}">${Math.round(v).toLocaleString("en")} msgs/s (${result.vs_publish[k]}x)</text>`;
  })
  .join("");
const html = `<!doctype html><meta charset="utf-8"><title>fanlog SDK publishing</title>
<h1>Publishing over HTTP from @fanlog/client</h1>
<p>${COUNT.toLocaleString("en")} messages of ${size} bytes to ${url}, one sitting; the ratio is to one publish per request.</p>
<svg width="900" height="${40 + Object.keys(rates).length * 40}" font-family="sans-serif" font-size="14">${bars}</svg>
<pre>${JSON.stringify(result, null, 2)}</pre>`;
writeFileSync("bench.html", html);
process.stderr.write("chart: bench.html\n");
console.log(JSON.stringify(result));
