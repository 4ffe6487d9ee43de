// Writes or checks dist/SOURCES.sha256: one line per input and per output of
// the build, `<sha256>  <path from the repository root>`, sorted by path.
//
// Contents are hashed with CRLF turned into LF, so a checkout on any platform
// gives the same lines; the order of files on disk plays no part. The Rust test
// tests/it/web_build.rs recomputes the same lines without npm.
import { createHash } from "node:crypto";
import { readdirSync, readFileSync, writeFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";

const web = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const root = resolve(web, "..");
const manifest = join(web, "dist/SOURCES.sha256");

// Keep in step with INPUTS and OUTPUTS in tests/it/web_build.rs.
const inputs = [
  "web/src",
  "web/index.html",
  "web/package.json",
  "web/package-lock.json",
  "web/vite.config.ts",
  "web/tsconfig.json",
  "proto/works/client",
];
const outputs = ["web/dist"];

function files(path) {
  const full = join(root, path);
  if (statSync(full).isDirectory()) {
    return readdirSync(full).flatMap((name) => files(`${path}/${name}`));
  }
  return [path];
}

function line(path) {
  const text = readFileSync(join(root, path)).toString("latin1").replaceAll("\r\n", "\n");
  const hash = createHash("sha256").update(Buffer.from(text, "latin1")).digest("hex");
  return `${hash}  ${path}\n`;
}

function listing() {
  const paths = [...inputs, ...outputs]
    .flatMap(files)
    .filter((path) => path !== relative(root, manifest).split(sep).join("/"));
  paths.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  return paths.map(line).join("");
}

if (process.argv.includes("--write")) {
  writeFileSync(manifest, listing());
  console.log(`wrote ${relative(root, manifest)}`);
} else {
  let committed = "";
  try {
    committed = readFileSync(manifest, "utf8").replaceAll("\r\n", "\n");
  } catch {}
  if (committed !== listing()) {
    console.error("web/dist does not match its sources: run `npm run build` in web/");
    process.exit(1);
  }
  console.log("web/dist matches its sources");
}
