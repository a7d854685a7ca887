// Prints the minified bundle's size, raw and gzipped (what a browser
// downloads): dist/index.min.js, built by `npm run build`.
import { readFileSync } from "node:fs";
import { gzipSync } from "node:zlib";

const min = readFileSync(new URL("../dist/index.min.js", import.meta.url));
const gz = gzipSync(min, { level: 9 });
console.log(JSON.stringify({ minified_bytes: min.length, gzipped_bytes: gz.length }));
