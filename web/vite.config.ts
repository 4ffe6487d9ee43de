import { defineConfig } from "vite";

// The node serves dist/ with a strict Content-Security-Policy: no inline
// script or style, no data: fonts, nothing from another origin. Everything is
// emitted as separate files with content hashes, and the same sources always
// give the same bytes (the Rust test compares them with SOURCES.sha256).
export default defineConfig({
  base: "/",
  oxc: {
    jsx: { runtime: "automatic", importSource: "preact" },
  },
  build: {
    outDir: "dist",
    emptyOutDir: true,
    target: "es2022",
    assetsInlineLimit: 0,
    cssCodeSplit: false,
    modulePreload: { polyfill: false },
    sourcemap: false,
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a running node: WORKS_NODE=http://127.0.0.1:4782
    proxy: process.env.WORKS_NODE
      ? { "/works.client.v1.": { target: process.env.WORKS_NODE, changeOrigin: true } }
      : undefined,
  },
});
