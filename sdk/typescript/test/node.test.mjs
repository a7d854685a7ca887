// The SDK in Node against a real `fanlog serve` (FANLOG_BIN, set by
// tests/sdk_typescript.rs): publish with acks and idempotency keys, the
// three subscription transports, and a broker killed (SIGKILL) and
// restarted mid-stream: every seq exactly once.

import { test } from "node:test";
import assert from "node:assert/strict";
import WebSocket from "ws";

import { Client, FanlogError } from "../dist/index.js";

import { TOKEN, serve, kill9, fresh } from "./broker.mjs";

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
