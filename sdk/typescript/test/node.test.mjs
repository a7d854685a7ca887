// The SDK in Node against a real `fanlog serve` (FANLOG_BIN, set by
// tests/sdk_typescript.rs): publish with acks and idempotency keys,
// batches and a producer, the three subscription transports, falling back
// from one to the next behind a hostile proxy, and a broker
// killed (SIGKILL) and restarted mid-stream: every seq exactly once.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { Client, FanlogError } from "../dist/index.js";

import { TOKEN, serve, kill9, fresh, hostileProxy } from "./broker.mjs";

test("publish is acknowledged with its seq; an idempotency key appends once", async () => {
  const { url, child } = await serve(fresh());
  const c = new Client({ url, token: TOKEN });
  const a = await c.publish("orders", { id: 1 });
  const b = await c.publish("orders", "plain text");
  const k1 = await c.publish("orders", "once", { idempotencyKey: "k-1" });
  const k2 = await c.publish("orders", "once", { idempotencyKey: "k-1" });
  assert.deepEqual([a, b, k1, k2], [0, 1, 2, 2]);
  const seqs = await c.publishBatch("orders", ["x", "y", "z"], { idempotencyKeyPrefix: "batch-1" });
  assert.deepEqual(seqs, [3, 4, 5]);
  // The same batch again (a retry): nothing appended twice.
  assert.deepEqual(await c.publishBatch("orders", ["x", "y", "z"], { idempotencyKeyPrefix: "batch-1" }), [3, 4, 5]);
  const page = await c.read("orders", { from: 0 });
  assert.deepEqual(page.messages.map((m) => m.data), ['{"id":1}', "plain text", "once", "x", "y", "z"]);
  assert.equal(page.messages[0].content_type, "application/json");
  assert.equal(page.next, 6);
  assert.deepEqual((await c.topics()).map((t) => t.name), ["orders"]);
  // Refusals are errors with the broker's reason.
  const bad = new Client({ url, token: "wrong" });
  await assert.rejects(bad.publish("orders", "x"), (e) => e instanceof FanlogError && e.status === 401);
  await assert.rejects(c.publish("bad name", "x"), (e) => e instanceof FanlogError && e.status === 400);
  child.kill("SIGKILL");
});

/** Every message of `topic`, page by page. */
async function readAll(c, topic) {
  const all = [];
  for (let from = 0; ; ) {
    const page = await c.read(topic, { from, limit: 1000 });
    if (page.messages.length === 0) return all;
    all.push(...page.messages);
    from = page.next;
  }
}

test("publishBatch and a producer pack messages into few requests, in order, each stored once", async () => {
  const { url, child } = await serve(fresh());
  let batchRequests = 0;
  const counting = (u, init) => {
    if (String(u).endsWith("/batch")) batchRequests++;
    return fetch(u, init);
  };
  const c = new Client({ url, token: TOKEN, fetch: counting });
  const kinds = (i) => (i % 3 === 0 ? `s${i}` : i % 3 === 1 ? { i } : new Uint8Array([i & 255, 0xff]));
  const msgs = [...Array(2500).keys()].map(kinds);
  const seqs = await c.publishBatch("b", msgs, { idempotencyKeyPrefix: "pb" });
  assert.deepEqual(seqs, [...Array(2500).keys()]);
  assert.equal(batchRequests, 3, "1,000 messages a request");
  // The same batch again (a retry): nothing appended twice.
  assert.deepEqual(await c.publishBatch("b", msgs, { idempotencyKeyPrefix: "pb", maxBatchMessages: 700 }), seqs);
  const stored = await readAll(c, "b");
  assert.equal(stored.length, 2500);
  assert.deepEqual(
    stored.slice(0, 3).map((m) => [m.seq, m.data, m.content_type, m.encoding]),
    [[0, "s0", "text/plain", undefined], [1, '{"i":1}', "application/json", undefined], [2, "Av8=", "application/octet-stream", "base64"]],
  );
  // The byte budget: 100 KB messages, five to a 512 KiB request.
  batchRequests = 0;
  const big = [...Array(10).keys()].map((i) => "x".repeat(100_000) + i);
  assert.deepEqual(await c.publishBatch("big", big), [...Array(10).keys()]);
  assert.equal(batchRequests, 2);
  // A producer: 500 sends at once share a handful of requests, seqs in send order.
  batchRequests = 0;
  const p = c.producer("p", { lingerMs: 20 });
  const sends = [...Array(500).keys()].map((i) => p.send(`m${i}`));
  assert.deepEqual(await Promise.all(sends), [...Array(500).keys()]);
  assert.ok(batchRequests <= 3, `${batchRequests} requests for 500 sends`);
  // Sent while a request is under way: the next request takes them.
  const first = p.send("a");
  const second = p.send("b", { contentType: "text/x-second" });
  await p.flush();
  assert.deepEqual([await first, await second], [500, 501]);
  const tail = (await c.read("p", { from: 500 })).messages;
  assert.deepEqual(tail.map((m) => [m.data, m.content_type]), [["a", "text/plain"], ["b", "text/x-second"]]);
  // A refused message fails its own request's sends, and the producer goes on.
  const refused = p.send("x", { idempotencyKey: "k" });
  await p.flush();
  await assert.doesNotReject(refused);
  const conflict = p.send("not x", { idempotencyKey: "k" });
  await assert.rejects(conflict, (e) => e instanceof FanlogError && e.status === 422);
  assert.equal(await p.send("after"), 503);
  child.kill("SIGKILL");
});

test("a producer through a broker killed and restarted: every message stored once, in send order", async () => {
  const dir = fresh();
  let broker = await serve(dir);
  const { url, port } = broker;
  // The 20th request is stored and acknowledged, then the broker is
  // killed (SIGKILL) and the answer never arrives: the producer must retry
  // it (and what queued behind it) against the restarted broker, which
  // must not store it twice.
  let requests = 0;
  let failed = 0;
  const lossy = async (u, init) => {
    if (String(u).endsWith("/batch") && ++requests === 20) {
      await (await fetch(u, init)).arrayBuffer();
      await kill9(broker.child);
      broker = await serve(dir, port);
      failed++;
      throw new TypeError("fetch failed: the answer was lost");
    }
    return fetch(u, init);
  };
  const c = new Client({ url, token: TOKEN, fetch: lossy, backoffMs: 50, maxBackoffMs: 500, publishAttempts: 100 });
  const p = c.producer("k", { lingerMs: 2, maxBatchMessages: 50 });
  const TOTAL = 3000;
  const acks = [];
  for (let i = 0; i < TOTAL; i++) {
    acks.push(p.send(`n${i}`));
    if (i % 20 === 19) await new Promise((r) => setTimeout(r, 1));
  }
  const seqs = await Promise.all(acks);
  assert.equal(failed, 1, "the broker was killed mid-stream");
  assert.deepEqual(seqs, [...Array(TOTAL).keys()], "acks in send order, dense");
  const stored = await readAll(c, "k");
  assert.equal(stored.length, TOTAL, "no message stored twice or lost");
  stored.forEach((m, i) => assert.deepEqual([m.seq, m.data], [i, `n${i}`]));
  broker.child.kill("SIGKILL");
});

for (const transport of ["sse", "ws", "poll"]) {
  test(`subscribe over ${transport}: every message from the start, in order, then live`, async () => {
    const { url, child } = await serve(fresh());
    const c = new Client({ url, token: TOKEN, WebSocket });
    for (let i = 0; i < 5; i++) await c.publish("t", `m${i}`);
    const sub = c.subscribe("t", { transport, from: "earliest" });
    const got = [];
    let live;
    for await (const ev of sub) {
      assert.equal(ev.kind, "message");
      got.push([ev.message.seq, ev.message.data]);
      if (got.length === 5) live = c.publish("t", "live");
      if (got.length === 6) break;
    }
    assert.deepEqual(got, [[0, "m0"], [1, "m1"], [2, "m2"], [3, "m3"], [4, "m4"], [5, "live"]]);
    // Its ack may come after the subscriber saw it: wait before the broker goes.
    assert.equal(await live, 5);
    child.kill("SIGKILL");
  });
}

for (const transport of ["sse", "ws", "poll"]) {
  test(`a broker killed and restarted mid-stream: over ${transport} every seq arrives exactly once`, async () => {
    const dir = fresh();
    let broker = await serve(dir);
    const { url, port } = broker;
    const c = new Client({ url, token: TOKEN, WebSocket, backoffMs: 50, maxBackoffMs: 500, publishAttempts: 100 });
    const TOTAL = 200;
    // The publisher: in order, each acknowledged, retried (with its
    // idempotency key) through the outage.
    const acked = new Map();
    const publisher = (async () => {
      for (let i = 0; i < TOTAL; i++) {
        const seq = await c.publish("stream", `n${i}`, { idempotencyKey: `p-${i}` });
        acked.set(seq, `n${i}`);
      }
    })();
    let reconnects = 0;
    const sub = c.subscribe("stream", {
      transport,
      from: "earliest",
      onDisconnect: () => reconnects++,
    });
    const seen = [];
    let restarted = false;
    for await (const ev of sub) {
      assert.equal(ev.kind, "message", "no gap: nothing was removed");
      seen.push([ev.message.seq, ev.message.data]);
      if (seen.length === 60 && !restarted) {
        restarted = true;
        await kill9(broker.child);
        broker = await serve(dir, port);
      }
      if (seen.length === TOTAL) break;
    }
    await publisher;
    assert.ok(reconnects >= 1, "the subscription reconnected");
    // Every seq once, in order, each with the payload acknowledged for it.
    assert.deepEqual(seen.map(([s]) => s), [...Array(TOTAL).keys()]);
    for (const [seq, data] of seen) assert.equal(data, acked.get(seq), `seq ${seq}`);
    broker.child.kill("SIGKILL");
  });
}

test("behind a proxy that blocks WebSocket and buffers SSE, a subscription falls back to long polling", async () => {
  const { url, child } = await serve(fresh());
  const proxy = await hostileProxy(url);
  const direct = new Client({ url, token: TOKEN });
  for (let i = 0; i < 5; i++) await direct.publish("fb", `m${i}`);
  const c = new Client({ url: proxy.url, token: TOKEN, WebSocket });
  const fallbacks = [];
  const sub = c.subscribe("fb", {
    transport: ["ws", "sse", "poll"],
    from: "earliest",
    openMs: 1000,
    onFallback: (to) => fallbacks.push(to),
  });
  const got = [];
  for await (const ev of sub) {
    got.push([ev.message.seq, ev.message.data]);
    if (got.length === 5) for (let i = 5; i < 10; i++) await direct.publish("fb", `m${i}`);
    if (got.length === 10) break;
  }
  assert.deepEqual(fallbacks, ["sse", "poll"]);
  assert.deepEqual(got, [...Array(10).keys()].map((i) => [i, `m${i}`]));
  child.kill("SIGKILL");
});

test("a broker that is down is waited for on the same transport, not taken for a blocked one", async () => {
  const dir = fresh();
  let broker = await serve(dir);
  const { url, port } = broker;
  await kill9(broker.child);
  const c = new Client({ url, token: TOKEN, backoffMs: 50, maxBackoffMs: 200 });
  const fallbacks = [];
  let disconnects = 0;
  const sub = c.subscribe("down", {
    from: "earliest",
    openMs: 500,
    onFallback: (to) => fallbacks.push(to),
    onDisconnect: () => disconnects++,
  });
  const reading = (async () => {
    const got = [];
    for await (const ev of sub) {
      got.push(ev.message.data);
      if (got.length === 2) return got;
    }
  })();
  await new Promise((r) => setTimeout(r, 1500));
  broker = await serve(dir, port);
  await c.publish("down", "a");
  await c.publish("down", "b");
  assert.deepEqual(await reading, ["a", "b"]);
  assert.ok(disconnects >= 2, "it tried while the broker was down");
  assert.deepEqual(fallbacks, [], "it stayed on SSE");
  broker.child.kill("SIGKILL");
});

test("a worker of a work-sharing group fetches, acks and nacks over HTTP", async () => {
  const { url, child } = await serve(fresh());
  const c = new Client({ url, token: TOKEN });
  for (let i = 0; i < 4; i++) await c.publish("jobs", `j${i}`);
  const w = c.worker("jobs", "billing", { options: { ackWait: "30s", maxDeliver: 2 } });
  // A fetch answers with what is ready: ask until all four are held.
  const jobs = [];
  while (jobs.length < 4) jobs.push(...(await w.fetch({ max: 4 - jobs.length, waitMs: 1000 })));
  assert.ok(w.name, "the broker named the worker");
  assert.deepEqual(jobs.map((j) => [j.seq, j.data, j.deliveries]), [[0, "j0", 1], [1, "j1", 1], [2, "j2", 1], [3, "j3", 1]]);
  await w.ack({ seqs: [0, 1] });
  await w.ack({ upTo: 3 }); // 2
  await w.nack(3, { error: "try again" });
  const again = await w.fetch({ max: 4, waitMs: 2000 });
  assert.deepEqual(again.map((j) => [j.seq, j.deliveries]), [[3, 2]]);
  await w.ack({ seqs: [3] });
  const info = await w.info();
  assert.equal(info.floor, 4, "every job settled");
  // Another worker by name; an ack of a job it does not hold is refused.
  const other = c.worker("jobs", "billing", { name: "w-2" });
  await assert.rejects(other.ack({ seqs: [0] }), (e) => e instanceof FanlogError && e.status === 409);
  child.kill("SIGKILL");
});
