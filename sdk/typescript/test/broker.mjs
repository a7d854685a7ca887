// A real `fanlog serve` for the SDK's tests: FANLOG_BIN is the binary
// (tests/sdk_typescript.rs sets it to this build's), started with a token
// that may do everything, `--fsync always`, on a fresh data directory.

import { after } from "node:test";
import { spawn } from "node:child_process";
import http from "node:http";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const BIN = process.env.FANLOG_BIN;
if (!BIN) throw new Error("FANLOG_BIN: the fanlog binary (tests/sdk_typescript.rs sets it)");
export const TOKEN = "sdk-test-token";
// FANLOG_* variables are the broker's settings: not this one.
const brokerEnv = { ...process.env };
delete brokerEnv.FANLOG_BIN;
const dirs = [];
const children = new Set();
const proxies = new Set();
// A test that fails leaves its broker running: stop them all, or the
// runner would wait on them for ever.
after(() => {
  children.forEach((c) => c.kill("SIGKILL"));
  proxies.forEach((p) => {
    p.closeAllConnections();
    p.close();
  });
  dirs.forEach((d) => rmSync(d, { recursive: true, force: true }));
});

/** Starts `fanlog serve` on `dir`; resolves with {url, port, child}. */
export function serve(dir, port = 0) {
  const cfg = join(dir, "fanlog.toml");
  writeFileSync(
    cfg,
    `[[auth.tokens]]\ntoken = "${TOKEN}"\npublish = ["*"]\nsubscribe = ["*"]\nadmin = true\n`,
  );
  const child = spawn(
    BIN,
    ["serve", "--data", join(dir, "data"), "--config", cfg, "--http", `127.0.0.1:${port}`,
      "--tcp", "127.0.0.1:0", "--quic", "off", "--fsync", "always"],
    { stdio: ["ignore", "pipe", "inherit"], env: brokerEnv },
  );
  children.add(child);
  child.on("exit", () => children.delete(child));
  return new Promise((resolve, reject) => {
    let out = "";
    child.stdout.on("data", (b) => {
      out += b;
      const m = out.match(/listening http (\S+)/);
      if (m) resolve({ url: `http://${m[1]}`, port: Number(m[1].split(":")[1]), child });
    });
    child.on("exit", (code) => reject(new Error(`fanlog serve exited (${code}): ${out}`)));
  });
}

/** SIGKILL, and wait until the process is gone. */
export function kill9(child) {
  return new Promise((resolve) => {
    child.removeAllListeners("exit");
    child.on("exit", resolve);
    child.kill("SIGKILL");
  });
}

/** A fresh directory, removed after the tests. */
export function fresh() {
  const d = mkdtempSync(join(tmpdir(), "fanlog-sdk-"));
  dirs.push(d);
  return d;
}

/**
 * A proxy in front of `target` as some corporate proxies are: it refuses
 * WebSocket upgrades, and it buffers event streams whole, so not one byte
 * of an endless one gets through. Everything else passes.
 */
export function hostileProxy(target) {
  const t = new URL(target);
  const server = http.createServer((req, res) => {
    const up = http.request(
      { host: t.hostname, port: t.port, path: req.url, method: req.method, headers: req.headers },
      (ur) => {
        res.on("close", () => ur.destroy());
        if ((ur.headers["content-type"] ?? "").startsWith("text/event-stream")) {
          ur.resume(); // held back until the stream ends, which it never does
          return;
        }
        res.writeHead(ur.statusCode, ur.headers);
        ur.pipe(res);
      },
    );
    up.on("error", () => res.destroy());
    req.pipe(up);
  });
  server.on("upgrade", (_req, socket) => socket.end("HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n"));
  proxies.add(server);
  return new Promise((resolve) =>
    server.listen(0, "127.0.0.1", () => resolve({ url: `http://127.0.0.1:${server.address().port}`, server })),
  );
}
