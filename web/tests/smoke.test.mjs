// Runs without a node: serves the committed web/dist/ under the node's
// Content-Security-Policy and checks that the app starts with no CSP
// violation, that sign-in is labelled, that a failed sign-in is shown, the
// Japanese switch, and phone width.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { createServer } from "node:http";
import { extname, join, normalize } from "node:path";
import { after, before, test } from "node:test";
import { CSP, launch, repositoryRoot, screenshot, watchedPage } from "./lib.mjs";

const dist = join(repositoryRoot, "web/dist");
const types = { ".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css" };
let server;
let url;
let browser;

before(async () => {
  server = createServer(async (request, response) => {
    const path = new URL(request.url, "http://x").pathname;
    if ((request.headers["content-type"] ?? "").startsWith("application/grpc")) {
      // As the node answers a login with a wrong password.
      response.writeHead(200, {
        "content-type": "application/grpc-web+proto",
        "grpc-status": "16",
        "grpc-message": "wrong id or password",
      });
      response.end();
      return;
    }
    const file = normalize(path === "/" ? "/index.html" : path);
    try {
      const body = await readFile(join(dist, file));
      response.writeHead(200, {
        "content-type": types[extname(file)] ?? "application/octet-stream",
        "content-security-policy": CSP,
      });
      response.end(body);
    } catch {
      response.writeHead(404, { "content-security-policy": CSP });
      response.end();
    }
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
  url = `http://127.0.0.1:${server.address().port}/`;
  browser = await launch();
});

after(async () => {
  await browser?.close();
  server?.close();
});

test("the app starts under the node's CSP and shows a refused sign-in", async () => {
  const context = await browser.context({ locale: "en-US" });
  const page = await watchedPage(context);
  await page.goto(url);
  await page.getByLabel("ID", { exact: true }).fill("alice@acme.example");
  await page.getByLabel("Password", { exact: true }).fill("wrong");
  await page.getByLabel("Password", { exact: true }).press("Enter");
  const alert = page.getByRole("alert");
  await alert.waitFor();
  assert.match(await alert.innerText(), /wrong id or password/);
  await screenshot(page, "smoke-signin-refused");
  assert.deepEqual(page.problems.csp, [], "no Content-Security-Policy violation");
  assert.deepEqual(page.problems.errors, [], "no uncaught error");
});

test("Japanese follows navigator.language and can be switched", async () => {
  const context = await browser.context({ locale: "ja-JP" });
  const page = await watchedPage(context);
  await page.goto(url);
  await page.getByRole("button", { name: "ログイン" }).waitFor();
  await page.getByLabel("パスワード", { exact: true }).waitFor();
  await page.getByRole("combobox", { name: "言語" }).selectOption("en");
  await page.getByRole("button", { name: "Sign in" }).waitFor();
  assert.deepEqual(page.problems.csp, []);
});

test("sign-in fits a phone screen", async () => {
  const context = await browser.context({ viewport: { width: 375, height: 740 }, locale: "en-US" });
  const page = await watchedPage(context);
  await page.goto(url);
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `page is ${width}px wide at a 375px viewport`);
  await screenshot(page, "smoke-phone");
});
