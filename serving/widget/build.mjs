// Builds dist/widget.js (one minified IIFE) and prints its size, raw and gzipped.
// The banner records a hash of the sources, so a test can tell a stale bundle without npm.
import { build } from "esbuild";
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { gzipSync } from "node:zlib";

const files = readdirSync("src").sort();
const hash = createHash("sha256");
for (const f of files) hash.update(f + "\0" + readFileSync(`src/${f}`) + "\0");
const srcHash = hash.digest("hex").slice(0, 16);

await build({
  entryPoints: ["src/index.js"],
  bundle: true,
  minify: true,
  format: "iife",
  target: ["es2020"],
  loader: { ".css": "text" },
  legalComments: "none",
  banner: { js: `/* kb-widget src:${srcHash} */` },
  outfile: "dist/widget.js",
});
const raw = statSync("dist/widget.js").size;
const gz = gzipSync(readFileSync("dist/widget.js"), { level: 9 }).length;
console.log(`dist/widget.js: ${(raw / 1024).toFixed(1)} KB, ${(gz / 1024).toFixed(1)} KB gzipped (src:${srcHash})`);
