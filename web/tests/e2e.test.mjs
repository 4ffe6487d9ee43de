// The scenario across two companies, each in its own browser contexts,
// against two running nodes (their web ports). Every URL and credential
// comes from the environment; see README.md in this folder.
//
// Company A (e.g. Acme) and B (e.g. Globex): the admins peer the nodes if
// they are not peered yet, allow external messaging and connect a member
// each through the console; alice (A) and carol (B) become contacts by an
// invitation link and chat; carol's message turns "delivered"; a file
// crosses; markup is shown as text; carol's admin turns external messaging
// off and alice sees carol become unknown; alice's token is refused by the
// admin console. On A, which has no LINE channel, the admin's "Chat with
// LINE users" is refused switching on and says why, while the greeting and
// the LINE connected members are kept; alice's profile says why she cannot
// add LINE users.
import assert from "node:assert/strict";
import { readFile, writeFile, mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { company, launch, screenshot, signIn, watchedPage } from "./lib.mjs";

const TIMEOUT = Number(process.env.WORKS_E2E_TIMEOUT_MS ?? 20_000);
const A = company("A");
const B = company("B");
// B's LINE user bound to carol (who sent a LINE sticker and took a text
// back), when B's node has a LINE account: WORKS_B_LINE_USER (the room
// member id) and WORKS_B_LINE_NAME.
const lineUser = process.env.WORKS_B_LINE_USER ? { id: process.env.WORKS_B_LINE_USER, name: process.env.WORKS_B_LINE_NAME ?? "" } : null;
const alice = A.members[0];
const carol = B.members[0];
assert.ok(alice && carol, "WORKS_A_MEMBERS and WORKS_B_MEMBERS each name at least one member");

let browser;
const pages = {};

before(async () => {
  browser = await launch();
  for (const name of ["adminA", "adminB", "alice", "carol"]) {
    pages[name] = await watchedPage(await browser.context({ locale: "en-US" }));
  }
});

after(async () => {
  for (const [name, page] of Object.entries(pages)) {
    await screenshot(page, `e2e-end-${name}`).catch(() => {});
  }
  await browser?.close();
});

async function openAdmin(page, section) {
  await page.getByRole("link", { name: "Admin" }).click();
  await page.getByRole("link", { name: section, exact: true }).click();
}

async function setExternal(page, on) {
  const box = page.getByRole("checkbox", { name: "Chat with WORKS users from other companies" });
  await box.waitFor({ timeout: TIMEOUT });
  if ((await box.isChecked()) !== on) await box.click();
  // The box shows what the node answered, so this waits for the node.
  await eventually(async () => (await box.isChecked()) === on, "external messaging " + (on ? "on" : "off"));
}

async function eventually(check, what) {
  const deadline = Date.now() + TIMEOUT;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  throw new Error(`timed out waiting for ${what}`);
}

async function openRoomWith(page, otherId) {
  await page.getByRole("link", { name: "Contacts" }).click();
  await page.getByRole("button", { name: `Message ${otherId}` }).click({ timeout: TIMEOUT });
  await page.getByRole("textbox", { name: "Message" }).waitFor({ timeout: TIMEOUT });
}

async function say(page, text) {
  const composer = page.getByRole("textbox", { name: "Message" });
  await composer.fill(text);
  await composer.press("Enter");
}

/** The texts of a room's messages, in the order shown, that are one of `texts`. */
async function shownInOrder(page, texts) {
  const all = await page.locator("li.event .text").allInnerTexts();
  return all.filter((text) => texts.includes(text));
}

/**
 * Nothing in the room view is wider than the viewport. The shell's main area
 * scrolls, so an element too wide inside it would not widen the document:
 * each element of the room is measured itself.
 */
async function assertFits(page, what) {
  const overflow = await page.evaluate(() => {
    const main = document.querySelector(".shell > main");
    const wide = [];
    if (main.scrollWidth > main.clientWidth) wide.push(`main scrolls ${main.scrollWidth - main.clientWidth}px sideways`);
    for (const element of document.querySelectorAll(".rooms, .rooms *")) {
      const box = element.getBoundingClientRect();
      if (box.width === 0 || element.closest(".visually-hidden, .attach")) continue;
      const name = `${element.tagName.toLowerCase()}${element.className ? `.${String(element.className).split(" ").join(".")}` : ""}`;
      if (box.left < -0.5 || box.right > innerWidth + 0.5) {
        wide.push(`${name} spans ${Math.round(box.left)}..${Math.round(box.right)}px`);
      } else if (element.scrollWidth > element.clientWidth + 1 && getComputedStyle(element).overflowX !== "visible") {
        wide.push(`${name} holds ${element.scrollWidth}px in ${element.clientWidth}px`);
      }
    }
    return wide;
  });
  assert.deepEqual(overflow, [], `${what} at a ${await page.evaluate(() => innerWidth)}px viewport: ${overflow.join("; ")}`);
}

function textEvent(page, text) {
  return page.locator("li.event .text").filter({ hasText: text });
}

test("admins sign in, peer their nodes and connect a member each", async () => {
  await signIn(pages.adminA, A.url, A.admin.id, A.admin.password);
  await signIn(pages.adminB, B.url, B.admin.id, B.admin.password);

  await openAdmin(pages.adminA, "Peering");
  await openAdmin(pages.adminB, "Peering");
  const peered = pages.adminA.locator(`tr[data-peer="${B.tenant}"]`);
  await pages.adminA.getByRole("heading", { name: "Peers" }).waitFor();
  if ((await peered.count()) === 0) {
    await pages.adminA.getByLabel("Peer tenant").fill(B.tenant);
    await pages.adminA.getByRole("button", { name: "Create invitation token" }).click();
    const token = await pages.adminA.getByLabel("Invitation token", { exact: true }).inputValue({ timeout: TIMEOUT });
    assert.ok(token.length > 0, "an invitation token is shown");
    await pages.adminB.getByLabel("Token", { exact: true }).fill(token);
    await pages.adminB.getByRole("button", { name: "Accept", exact: true }).click();
    await pages.adminB.locator(`tr[data-peer="${A.tenant}"]`).waitFor({ timeout: TIMEOUT });
    await pages.adminA.reload();
    await peered.waitFor({ timeout: TIMEOUT });
  }
  await screenshot(pages.adminA, "e2e-01-peers");

  for (const [page, member] of [
    [pages.adminA, alice],
    [pages.adminB, carol],
  ]) {
    await openAdmin(page, "External messaging");
    await setExternal(page, true);
    if ((await page.locator(`li[data-member="${member.id}"]`).count()) === 0) {
      await page.getByLabel("ID", { exact: true }).fill(member.id);
      await page.getByRole("button", { name: "Connect", exact: true }).click();
    }
    await page.locator(`li[data-member="${member.id}"]`).waitFor({ timeout: TIMEOUT });
  }
  await screenshot(pages.adminB, "e2e-02-external-settings");
});

test("without a LINE channel the admin is refused LINE but keeps its greeting and members", async () => {
  const page = pages.adminA;
  await openAdmin(page, "Chat with LINE users");
  const hint = page.locator('[data-line-channel="none"]');
  await hint.waitFor({ timeout: TIMEOUT });
  assert.match(await hint.innerText(), /No LINE channel on this node: add \[line\] to node\.toml/);

  const use = page.getByRole("checkbox", { name: "Use status" });
  assert.equal(await use.isChecked(), false, "LINE starts off");
  await use.click();
  const alert = page.locator('.error[role="alert"]');
  await alert.waitFor({ timeout: TIMEOUT });
  assert.match(await alert.innerText(), /FailedPrecondition: this node has no LINE channel/);
  await eventually(async () => !(await use.isChecked()), "the box to show LINE still off");
  await alert.getByRole("button", { name: "Close" }).click();

  const auto = page.getByRole("checkbox", { name: "Permit new members automatically" });
  await auto.click();
  await eventually(() => auto.isChecked(), "automatic grants on");
  await auto.click();
  await eventually(async () => !(await auto.isChecked()), "automatic grants off");

  const greeting = `Welcome to Acme on LINE <b>${Date.now()}</b>\nSend us a message ID.`;
  const area = page.getByRole("textbox", { name: "Greeting message" });
  await area.fill(greeting);
  await page.getByRole("button", { name: "Save greeting" }).click();
  await page.getByRole("status").filter({ hasText: "Saved" }).waitFor({ timeout: TIMEOUT });
  await page.reload();
  await eventually(async () => (await area.inputValue()) === greeting, "the saved greeting after a reload");
  assert.equal(await page.locator(".admin b").count(), 0, "the greeting's markup is text");

  const listed = page.locator(`li[data-line-member="${alice.id}"]`);
  if ((await listed.count()) > 0) await page.getByRole("button", { name: `Remove ${alice.id}` }).click();
  await listed.waitFor({ state: "detached", timeout: TIMEOUT });
  await page.getByLabel("ID", { exact: true }).fill(alice.id);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await listed.waitFor({ timeout: TIMEOUT });
  assert.match(await listed.innerText(), new RegExp(A.admin.id.replaceAll(".", "\\.")), "granted by the admin");
  await page.getByRole("button", { name: `Remove ${alice.id}` }).click();
  await listed.waitFor({ state: "detached", timeout: TIMEOUT });
  await page.getByLabel("ID", { exact: true }).fill(alice.id);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await listed.waitFor({ timeout: TIMEOUT });
  await page.getByLabel("ID", { exact: true }).fill("nobody@" + A.tenant);
  await page.getByRole("button", { name: "Add", exact: true }).click();
  await alert.waitFor({ timeout: TIMEOUT });
  assert.match(await alert.innerText(), /NotFound/);
  await alert.getByRole("button", { name: "Close" }).click();
  await screenshot(page, "e2e-02b-line-settings");
});

test("alice and carol become contacts by an invitation link", async () => {
  await signIn(pages.alice, A.url, alice.id, alice.password);
  await signIn(pages.carol, B.url, carol.id, carol.password);
  for (const page of [pages.alice, pages.carol]) {
    await page.locator('[data-state="live"]').waitFor({ timeout: TIMEOUT });
  }

  await pages.alice.getByRole("link", { name: "Contacts" }).click();
  await pages.alice.getByRole("button", { name: "Create invitation link" }).click();
  const link = await pages.alice.getByLabel("Invitation link", { exact: true }).inputValue({ timeout: TIMEOUT });
  assert.ok(link.length > 0, "an invitation link is shown");
  await pages.alice.getByRole("img", { name: "QR code" }).waitFor({ timeout: TIMEOUT });
  await pages.alice.getByRole("button", { name: "Copy" }).first().waitFor();
  await screenshot(pages.alice, "e2e-03-invitation");

  await pages.carol.getByRole("link", { name: "Contacts" }).click();
  await pages.carol.getByLabel("Paste an invitation link").fill(link);
  await pages.carol.getByRole("button", { name: "Redeem" }).click();
  await pages.carol.locator(`li.contact[data-user="${alice.id}"]`).waitFor({ timeout: TIMEOUT });
  await pages.alice.reload();
  await pages.alice.locator(`li.contact[data-user="${carol.id}"]`).waitFor({ timeout: TIMEOUT });
  await screenshot(pages.carol, "e2e-04-contacts");
});

test("carol's message reaches alice and turns delivered", async () => {
  await openRoomWith(pages.carol, alice.id);
  await say(pages.carol, "Hello from Globex");
  const mine = pages.carol.locator("li.event.mine").filter({ hasText: "Hello from Globex" });
  await mine.locator('[data-delivery="DELIVERED"]').waitFor({ timeout: TIMEOUT });
  assert.match(await mine.locator(".delivery").innerText(), /delivered/);

  // Alice sees the room marked external, with carol's company, then the message.
  await pages.alice.getByRole("link", { name: "Messages" }).first().click();
  const room = pages.alice.locator("a.room").filter({ hasText: carol.id });
  await room.waitFor({ timeout: TIMEOUT });
  assert.match(await room.locator(".room-external").innerText(), new RegExp(B.tenant.replaceAll(".", "\\.")));
  await room.click();
  await textEvent(pages.alice, "Hello from Globex").waitFor({ timeout: TIMEOUT });

  await say(pages.alice, "Hello from Acme");
  await textEvent(pages.carol, "Hello from Acme").waitFor({ timeout: TIMEOUT });
  await screenshot(pages.alice, "e2e-05-chat-alice");
  await screenshot(pages.carol, "e2e-05-chat-carol");
});

test("two messages typed back to back both arrive, once each, in order", async () => {
  const texts = ["First of two", "Second of two"];
  const composer = pages.alice.getByRole("textbox", { name: "Message" });
  // No wait between them: the second is typed while the first is on its way.
  await composer.fill(texts[0]);
  await composer.press("Enter");
  await composer.fill(texts[1]);
  await composer.press("Enter");
  for (const page of [pages.alice, pages.carol]) {
    for (const text of texts) await textEvent(page, text).waitFor({ timeout: TIMEOUT });
  }
  await pages.alice.waitForTimeout(500);
  for (const [name, page] of [
    ["alice", pages.alice],
    ["carol", pages.carol],
  ]) {
    assert.deepEqual(await shownInOrder(page, texts), texts, `${name} sees both messages once, in order`);
  }
  assert.equal(await composer.inputValue(), "", "the composer is empty after both");
});

test("the open external room fits a phone for both", async () => {
  for (const [name, page] of [
    ["alice", pages.alice],
    ["carol", pages.carol],
  ]) {
    await page.setViewportSize({ width: 375, height: 740 });
    await assertFits(page, `${name}'s room with carol's company`);
    await screenshot(page, `e2e-05b-phone-${name}`);
    await page.setViewportSize({ width: 1200, height: 800 });
  }
});

test("markup in a message is shown as text", async () => {
  const markup = "<img src=x onerror=alert(1)>";
  await say(pages.alice, markup);
  const shown = textEvent(pages.carol, markup);
  await shown.waitFor({ timeout: TIMEOUT });
  assert.equal(await shown.innerText(), markup);
  assert.equal(await pages.carol.locator('li.event img[src="x"]').count(), 0, "no img element was made");
  await pages.carol.waitForTimeout(500);
  assert.deepEqual(pages.carol.problems.dialogs, [], "no dialog fired");
  assert.deepEqual(pages.alice.problems.dialogs, [], "no dialog fired");
  await screenshot(pages.carol, "e2e-06-markup-as-text");
});

test("alice's live stream resumes after a drop with nothing lost or twice", async () => {
  const context = pages.alice.context();
  await context.setOffline(true);
  // A stream cut by the network shows as not connected; then carol writes.
  await pages.alice.locator('[data-state="live"]').waitFor({ state: "detached", timeout: TIMEOUT }).catch(() => {});
  await say(pages.carol, "While you were away");
  await say(pages.carol, "And one more");
  for (const text of ["While you were away", "And one more"]) {
    await textEvent(pages.carol, text).waitFor({ timeout: TIMEOUT });
  }
  await context.setOffline(false);
  await pages.alice.locator('[data-state="live"]').waitFor({ timeout: TIMEOUT * 2 });
  for (const text of ["While you were away", "And one more"]) {
    await textEvent(pages.alice, text).waitFor({ timeout: TIMEOUT });
  }
  await pages.alice.waitForTimeout(500);
  for (const text of ["While you were away", "And one more", "Hello from Globex"]) {
    assert.equal(await textEvent(pages.alice, text).count(), 1, `"${text}" is shown once`);
  }
  await screenshot(pages.alice, "e2e-06b-resumed");
});

test("a file crosses from alice to carol", async () => {
  const dir = await mkdtemp(join(tmpdir(), "works-e2e-"));
  const path = join(dir, "report.txt");
  const content = `quarterly report ${Date.now()}\n`;
  await writeFile(path, content);
  await pages.alice.getByLabel("Attach file").setInputFiles(path);
  const file = pages.carol.locator('li.event[data-kind="attachment"]').filter({ hasText: "report.txt" });
  await file.waitFor({ timeout: TIMEOUT }).catch(async (error) => {
    const alert = await pages.alice.getByRole("alert").innerText().catch(() => "");
    throw new Error(`the file did not reach carol${alert ? ` (alice sees: ${alert})` : ""}: ${error.message}`);
  });
  const [download] = await Promise.all([
    pages.carol.waitForEvent("download", { timeout: TIMEOUT }),
    file.getByRole("button", { name: "Download report.txt" }).click(),
  ]);
  assert.equal(download.suggestedFilename(), "report.txt");
  assert.equal(await readFile(await download.path(), "utf8"), content);
  await screenshot(pages.carol, "e2e-07-file");
});

test("carol adds LINE users by her message ID, link or QR code, and chats with one by name", { skip: !lineUser }, async () => {
  const page = pages.carol;
  await page.getByRole("link", { name: "Profile" }).click();
  const section = page.locator("section").filter({ has: page.getByRole("heading", { name: "Add LINE user" }) });
  await section.waitFor({ timeout: TIMEOUT });
  assert.equal(await section.getByLabel("Message ID", { exact: true }).inputValue({ timeout: TIMEOUT }), carol.id);
  const link = await section.getByLabel("Add me on LINE link", { exact: true }).inputValue();
  assert.match(link, /^https:\/\/line\.me\/R\/oaMessage\/[^/]+\/\?Hello%20/);
  assert.ok(link.includes(encodeURIComponent(carol.id)), `the link carries carol's id: ${link}`);
  await section.getByRole("button", { name: "Copy Add me on LINE link" }).waitFor();
  const qr = section.getByRole("img", { name: "LINE QR code" });
  await qr.waitFor({ timeout: TIMEOUT });
  await eventually(() => qr.evaluate((img) => img.complete && img.naturalWidth > 0), "the QR code to load");
  await screenshot(page, "e2e-07b-line-invite");

  await page.getByRole("link", { name: "Messages" }).first().click();
  const room = page.locator("a.room").filter({ has: page.locator(".badge.line") }).filter({ hasText: lineUser.name });
  await room.waitFor({ timeout: TIMEOUT });
  await room.click();
  const sticker = page.locator('li.event[data-kind="sticker"]');
  await sticker.waitFor({ timeout: TIMEOUT });
  assert.equal(await sticker.locator(".sticker").innerText(), "LINE sticker 446/1988");
  assert.equal(await sticker.locator(".sender").innerText(), lineUser.name);
  const unsent = page.locator('li.event[data-kind="unsent"]');
  await unsent.waitFor({ timeout: TIMEOUT });
  assert.equal(await unsent.innerText(), `${lineUser.name}: message taken back`);
  await page.getByRole("button", { name: "Info" }).click();
  const member = page.locator(`.room-info li[data-member="${lineUser.id}"]`);
  await member.waitFor({ timeout: TIMEOUT });
  assert.match(await member.innerText(), new RegExp(`LINE\\s+${lineUser.name}`));
  await screenshot(page, "e2e-07c-line-room");
  await page.getByRole("button", { name: "Info" }).click();
});

test("carol's admin turns external messaging off and alice sees carol become unknown", async () => {
  await openAdmin(pages.adminB, "External messaging");
  await setExternal(pages.adminB, false);
  const unknown = pages.alice.locator('li.event[data-kind="unknown"]').filter({ hasText: carol.id });
  await unknown.waitFor({ timeout: TIMEOUT });
  assert.match(await unknown.innerText(), /became unknown/);
  await screenshot(pages.alice, "e2e-08-unknown");
});

test("a member's token is refused by the admin console", async () => {
  assert.equal(await pages.alice.getByRole("link", { name: "Admin" }).count(), 0, "no Admin tab for a member");
  await pages.alice.goto(`${A.url}#/admin/members`);
  const refused = pages.alice.locator('[data-refused="true"]').first();
  await refused.waitFor({ timeout: TIMEOUT });
  assert.match(await refused.innerText(), /PermissionDenied/);
  assert.equal(await pages.alice.locator("tr[data-member]").count(), 0, "no member is listed");
  await screenshot(pages.alice, "e2e-09-console-refused");
});

test("alice's profile says why she cannot add LINE users", async () => {
  const page = pages.alice;
  await page.getByRole("link", { name: "Profile" }).click();
  const section = page.locator("section").filter({ has: page.getByRole("heading", { name: "Add LINE user" }) });
  await section.waitFor({ timeout: TIMEOUT });
  const refused = section.locator('[data-refused="true"]');
  assert.match(await refused.innerText(), /FailedPrecondition: your company has no LINE account on this node/);
  assert.equal(await section.getByRole("img").count(), 0, "no QR code without a LINE account");
  await screenshot(page, "e2e-09b-profile-line");
});

test("the signed-in app fits a phone and switches to Japanese", async () => {
  // Alice: carol has left the room since her company withdrew her.
  const page = pages.alice;
  await page.setViewportSize({ width: 375, height: 740 });
  await page.getByRole("link", { name: "Messages" }).first().click();
  const width = await page.evaluate(() => document.documentElement.scrollWidth);
  assert.ok(width <= 375, `the room list is ${width}px wide at a 375px viewport`);
  await page.locator("a.room").first().click();
  await page.getByRole("textbox", { name: "Message" }).waitFor();
  await assertFits(page, "alice's room");
  await page.getByRole("button", { name: "Info" }).click();
  await assertFits(page, "alice's room with its info");
  await page.getByRole("button", { name: "Info" }).click();
  await screenshot(page, "e2e-10-phone-room");
  await page.getByRole("combobox", { name: "Language" }).selectOption("ja");
  await page.getByRole("textbox", { name: "メッセージ" }).waitFor();
  await assertFits(page, "alice's room in Japanese");
  await page.getByRole("button", { name: "ログアウト" }).waitFor();
  await screenshot(page, "e2e-11-japanese");
  await page.getByRole("combobox", { name: "言語" }).selectOption("en");
  await page.setViewportSize({ width: 1200, height: 800 });
});

test("no page broke the Content-Security-Policy or threw", () => {
  for (const [name, page] of Object.entries(pages)) {
    assert.deepEqual(page.problems.csp, [], `${name}: CSP violations`);
    assert.deepEqual(page.problems.errors, [], `${name}: uncaught errors`);
  }
});
