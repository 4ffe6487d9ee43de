// Shared pieces of the browser tests: Debian's Chromium through
// playwright-core (no browser download), a fresh profile per run, screenshots
// under the repository's target/browser/.
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const here = dirname(fileURLToPath(import.meta.url));
export const repositoryRoot = resolve(here, "../..");
export const screenshotDir = process.env.WORKS_SCREENSHOTS ?? join(repositoryRoot, "target/browser");

export const CHROMIUM = process.env.WORKS_CHROMIUM ?? "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

/** The node's Content-Security-Policy for the web port. */
export const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; " +
  "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/**
 * A browser with a fresh user-data-dir; each `context()` is a separate
 * person (own cookies and sessionStorage). Call close() at the end.
 */
export async function launch() {
  const profile = mkdtempSync(join(tmpdir(), "works-browser-"));
  const browser = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: CHROMIUM_ARGS,
    acceptDownloads: true,
    viewport: { width: 1200, height: 800 },
  });
  const realBrowser = browser.browser();
  const contexts = [];
  return {
    /** A new, separate browser context (one person). */
    async context(options = {}) {
      const context = realBrowser
        ? await realBrowser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 800 }, ...options })
        : browser;
      contexts.push(context);
      return context;
    },
    async close() {
      for (const context of contexts) if (context !== browser) await context.close().catch(() => {});
      await browser.close().catch(() => {});
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/**
 * Opens a page that records CSP violations, page errors and dialogs, so a
 * test can assert none happened.
 */
export async function watchedPage(context) {
  const page = await context.newPage();
  const problems = { csp: [], errors: [], dialogs: [] };
  page.on("console", (message) => {
    if (/Content Security Policy/i.test(message.text())) problems.csp.push(message.text());
  });
  page.on("pageerror", (error) => problems.errors.push(String(error)));
  page.on("dialog", async (dialog) => {
    problems.dialogs.push(`${dialog.type()}: ${dialog.message()}`);
    await dialog.dismiss().catch(() => {});
  });
  page.problems = problems;
  return page;
}

export async function screenshot(page, name) {
  mkdirSync(screenshotDir, { recursive: true });
  await page.screenshot({ path: join(screenshotDir, `${name}.png`), fullPage: true });
}

export async function signIn(page, url, id, password) {
  await page.goto(url);
  await page.getByLabel("ID", { exact: true }).fill(id);
  await page.getByLabel("Password", { exact: true }).fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("button", { name: "Sign out" }).waitFor({ timeout: 15_000 });
}

/** Reads a required environment variable, or fails naming it. */
export function env(name) {
  const value = process.env[name];
  if (!value) throw new Error(`environment variable ${name} is not set (see web/tests/README.md)`);
  return value;
}

/** "id:password,id:password" → [{ id, password }]. A password may contain ':'. */
export function members(list) {
  return list
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((entry) => {
      const at = entry.indexOf(":");
      if (at < 0) throw new Error(`member "${entry}" is not id:password`);
      return { id: entry.slice(0, at), password: entry.slice(at + 1) };
    });
}

export function tenantOf(memberId) {
  return memberId.slice(memberId.lastIndexOf("@") + 1);
}

/** One company's node: WORKS_<KEY>_URL, _ADMIN_ID, _ADMIN_PASSWORD, _MEMBERS. */
export function company(key) {
  const admin = { id: env(`WORKS_${key}_ADMIN_ID`), password: env(`WORKS_${key}_ADMIN_PASSWORD`) };
  return {
    url: env(`WORKS_${key}_URL`).replace(/\/$/, "") + "/",
    admin,
    tenant: tenantOf(admin.id),
    members: members(env(`WORKS_${key}_MEMBERS`)),
  };
}
