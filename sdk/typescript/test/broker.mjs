// A real `fanlog serve` for the SDK's tests: FANLOG_BIN is the binary
// (tests/sdk_typescript.rs sets it to this build's), started with a token
// that may do everything, `--fsync always`, on a fresh data directory.

import { after } from "node:test";
import { spawn } from "node:child_process";
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
// A test that fails leaves its broker running: stop them all, or the
// runner would wait on them for ever.
after(() => {
  children.forEach((c) => c.kill("SIGKILL"));
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
