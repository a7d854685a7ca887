// The SDK in a real browser: Debian's Chromium driven by Playwright
// (playwright-core, no bundled browser), the IIFE bundle loaded into a page
// of the broker's own origin. A browser holds no token: the page signs in
// with a session cookie (POST /session, as the page's backend would let it)
// and streams with single-use tickets; batches are published from the page.

import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync, existsSync } from "node:fs";
import { chromium } from "playwright-core";

import { TOKEN, serve, fresh, hostileProxy } from "./broker.mjs";

const CHROMIUM = process.env.CHROMIUM ?? ["/usr/bin/chromium", "/usr/bin/chromium-browser"].find(existsSync);
const bundle = readFileSync(new URL("../dist/index.iife.js", import.meta.url), "utf8");

test("in Chromium: publish and subscribe over SSE, WebSocket and long polling, with a session cookie and with tickets", async () => {
  assert.ok(CHROMIUM, "Chromium (scripts/test.sh installs it)");
  const { url, child } = await serve(fresh());
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    await page.goto(`${url}/healthz`);
    await page.addScriptTag({ content: bundle });
    const got = await page.evaluate(async (token) => {
      const { Client } = window.Fanlog;
      // The page's backend would do this with its token; the cookie is
      // HttpOnly, so the page never sees a credential.
      await new Client({ url: location.origin, token }).openSession();
      const c = new Client({ url: location.origin, credentials: "include" });
      const seqs = [];
      for (const m of ["a", "b", "c"]) seqs.push(await c.publish("web", m));
      const take = async (sub, n) => {
        const out = [];
        for await (const ev of sub) {
          out.push([ev.message.seq, ev.message.data]);
          if (out.length === n) break;
        }
        return out;
      };
      const sse = await take(c.subscribe("web", { from: "earliest", transport: "sse" }), 3);
      const ws = await take(c.subscribe("web", { from: "earliest", transport: "ws" }), 3);
      // Without the session: tickets, one per connection.
      await c.closeSession();
      const refused = await c.publish("web", "x").then(() => null, (e) => e.status);
      const ticketed = new Client({ url: location.origin });
      const ticket = () => new Client({ url: location.origin, token }).ticket();
      const poll = await take(ticketed.subscribe("web", { from: { seq: 1 }, transport: "poll", ticket }), 2);
      const sseTicket = await take(ticketed.subscribe("web", { from: { seq: 2 }, transport: "sse", ticket }), 1);
      // Batches from the page: publishBatch and a producer, bytes included.
      const author = new Client({ url: location.origin, token });
      const batch = await author.publishBatch("web", ["d", new Uint8Array([0, 255])]);
      const producer = author.producer("web");
      const produced = await Promise.all(["e", { f: 1 }].map((m) => producer.send(m)));
      const tail = (await author.read("web", { from: 3 })).messages.map((m) => [m.seq, m.data, m.encoding ?? null]);
      return { seqs, sse, ws, refused, poll, sseTicket, batch, produced, tail };
    }, TOKEN);
    const all = [[0, "a"], [1, "b"], [2, "c"]];
    assert.deepEqual(got.seqs, [0, 1, 2]);
    assert.deepEqual(got.sse, all);
    assert.deepEqual(got.ws, all);
    assert.equal(got.refused, 401, "the session ended");
    assert.deepEqual(got.poll, all.slice(1));
    assert.deepEqual(got.sseTicket, all.slice(2));
    assert.deepEqual([got.batch, got.produced], [[3, 4], [5, 6]]);
    assert.deepEqual(got.tail, [[3, "d", null], [4, "AP8=", "base64"], [5, "e", null], [6, '{"f":1}', null]]);
  } finally {
    await browser.close();
    child.kill("SIGKILL");
  }
});

test("in Chromium behind a proxy that blocks WebSocket and buffers SSE: the subscription falls back to long polling", async () => {
  assert.ok(CHROMIUM, "Chromium (scripts/test.sh installs it)");
  const { url, child } = await serve(fresh());
  const proxy = await hostileProxy(url);
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ["--no-sandbox"] });
  try {
    const page = await browser.newPage();
    await page.goto(`${proxy.url}/healthz`);
    await page.addScriptTag({ content: bundle });
    const got = await page.evaluate(async (token) => {
      const { Client } = window.Fanlog;
      const author = new Client({ url: location.origin, token });
      await author.publishBatch("behind", ["a", "b", "c"]);
      const c = new Client({ url: location.origin });
      const fallbacks = [];
      const seen = [];
      const sub = c.subscribe("behind", {
        transport: ["ws", "sse", "poll"],
        from: "earliest",
        openMs: 1000,
        ticket: () => author.ticket(),
        onFallback: (to) => fallbacks.push(to),
      });
      for await (const ev of sub) {
        seen.push([ev.message.seq, ev.message.data]);
        if (seen.length === 3) await author.publish("behind", "live");
        if (seen.length === 4) break;
      }
      return { fallbacks, seen };
    }, TOKEN);
    assert.deepEqual(got.fallbacks, ["sse", "poll"]);
    assert.deepEqual(got.seen, [[0, "a"], [1, "b"], [2, "c"], [3, "live"]]);
  } finally {
    await browser.close();
    child.kill("SIGKILL");
  }
});
