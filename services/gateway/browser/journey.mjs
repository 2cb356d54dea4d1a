// The dashboard journey in real headless Chromium:
// sign up → connect a fake Slack → create a Pilot with an approval step →
// trigger it by a signed webhook → watch the run pause live → approve →
// the run finishes → export → change password → delete the account.
//
// Along the way it asserts that exactly one cookie name is ever set, that
// no page breaks the Content-Security-Policy, that axe-core finds no serious
// or critical violation on any page, and that no page scrolls horizontally at
// 375 px. Screenshots go to BIZOPS_TEST_SCREENSHOTS.
//
// Environment:
//   BIZOPS_TEST_BASE_URL      the gateway, e.g. http://127.0.0.1:8080 (required)
//   BIZOPS_TEST_SLACK_URL     the fake Slack incoming-webhook URL to connect (required)
//   BIZOPS_TEST_SCREENSHOTS   directory for screenshots (default target/screenshots)
//   BIZOPS_TEST_TRIGGER_URL   optional: instead of signing the webhook here, POST
//                             {"webhook_url", "pilot_id", "secret"} to this URL and
//                             let the harness send it (must answer 2xx)
//   BIZOPS_TEST_CHROMIUM      browser binary (default /usr/bin/chromium)
//   BIZOPS_TEST_TIMEOUT_MS    how long a run may take to reach a state (default 60000)
import { createHmac, randomUUID } from "node:crypto";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

import { chromium } from "playwright-core";

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve("axe-core/axe.min.js"), "utf8");

const BASE = required("BIZOPS_TEST_BASE_URL").replace(/\/$/, "");
const SLACK_URL = required("BIZOPS_TEST_SLACK_URL");
const SHOTS = resolve(process.env.BIZOPS_TEST_SCREENSHOTS || "target/screenshots");
const TRIGGER_URL = process.env.BIZOPS_TEST_TRIGGER_URL || "";
const CHROMIUM = process.env.BIZOPS_TEST_CHROMIUM || "/usr/bin/chromium";
const RUN_TIMEOUT = Number(process.env.BIZOPS_TEST_TIMEOUT_MS || 60000);
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];
const COOKIE_NAMES = new Set(["__Host-bizops_session", "bizops_session"]);

function required(name) {
  const value = process.env[name];
  if (!value) {
    console.error(`journey: ${name} is required`);
    process.exit(2);
  }
  return value;
}

function check(condition, message) {
  if (!condition) throw new Error(message);
}

const seenCookieNames = new Set();
const cspViolations = [];
const results = { passed: 0, failed: 0 };

async function step(name, fn) {
  const started = Date.now();
  try {
    await fn();
    results.passed += 1;
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (error) {
    results.failed += 1;
    console.log(`FAIL ${name}: ${error.message}`);
    throw error;
  }
}

/** axe-core on the current page (evaluated over CDP, so the page's CSP stays strict). */
async function axe(page, label) {
  await page.evaluate(AXE_SOURCE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, {
      runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"] },
    });
    return result.violations.map((v) => ({
      id: v.id,
      impact: v.impact,
      help: v.help,
      nodes: v.nodes.slice(0, 3).map((n) => n.target.join(" ")),
    }));
  });
  const bad = violations.filter((v) => v.impact === "serious" || v.impact === "critical");
  for (const v of violations.filter((v) => !bad.includes(v))) {
    console.log(`     axe (${v.impact}) on ${label}: ${v.id} — ${v.help}`);
  }
  check(bad.length === 0, `axe on ${label}: ${JSON.stringify(bad, null, 2)}`);
}

/** No horizontal scrolling at 375 px; a phone-sized screenshot too. */
async function narrow(page, label) {
  const size = page.viewportSize();
  await page.setViewportSize({ width: 375, height: 812 });
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  const offenders = overflow > 0
    ? await page.evaluate(() =>
        [...document.querySelectorAll("body *")]
          .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 0.5)
          .slice(0, 8)
          .map((e) => `${e.tagName.toLowerCase()}${e.id ? "#" + e.id : ""}${e.className ? "." + e.className : ""} right=${Math.round(e.getBoundingClientRect().right)}`))
    : [];
  await page.screenshot({ path: join(SHOTS, `${label}-375.png`), fullPage: true });
  await page.setViewportSize(size);
  check(overflow <= 0, `${label} scrolls horizontally at 375 px by ${overflow} px: ${offenders.join(", ")}`);
}

/** Every check a page gets: screenshot, axe, 375 px, no CSP violation. */
async function audit(page, label) {
  await page.waitForLoadState("load");
  await page.screenshot({ path: join(SHOTS, `${label}.png`), fullPage: true });
  await axe(page, label);
  await narrow(page, label);
  check(cspViolations.length === 0, `CSP violations: ${cspViolations.join("; ")}`);
}

/** Standard Webhooks: v1 = base64(HMAC-SHA256(base64decode(secret without whsec_), "{id}.{ts}.{body}")). */
async function sendWebhook(webhookUrl, pilotId, secret) {
  if (TRIGGER_URL) {
    const r = await fetch(TRIGGER_URL, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ webhook_url: webhookUrl, pilot_id: pilotId, secret }),
    });
    check(r.ok, `the trigger hook answered ${r.status}`);
    return;
  }
  const id = `msg_${randomUUID()}`;
  const ts = Math.floor(Date.now() / 1000).toString();
  const body = JSON.stringify({ order: 1042, customer: "Ada", total: "129.00" });
  const key = Buffer.from(secret.replace(/^whsec_/, ""), "base64");
  const signature = createHmac("sha256", key).update(`${id}.${ts}.${body}`).digest("base64");
  const r = await fetch(webhookUrl, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      "webhook-id": id,
      "webhook-timestamp": ts,
      "webhook-signature": `v1,${signature}`,
    },
    body,
  });
  const answer = await r.text();
  check(r.status === 202, `webhook answered ${r.status}: ${answer}`);
  check(JSON.parse(answer).trigger_id, "no trigger_id in the answer");
}

async function main() {
  mkdirSync(SHOTS, { recursive: true });
  const profile = mkdtempSync(join(tmpdir(), "bizops-journey-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: FLAGS,
    acceptDownloads: true,
    viewport: { width: 1280, height: 900 },
  });
  context.on("response", async (response) => {
    for (const h of await response.headersArray()) {
      if (h.name.toLowerCase() === "set-cookie") {
        for (const line of h.value.split("\n")) seenCookieNames.add(line.split("=")[0].trim());
      }
    }
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (msg) => {
    if (/Content.Security.Policy|Refused to/i.test(msg.text())) cspViolations.push(msg.text());
  });
  page.setDefaultTimeout(15000);

  const email = `journey-${Date.now()}@example.com`;
  const password = "plain hedgehog orbit violin 42";
  const newPassword = "quiet lantern meadow copper 77";
  let pilotId = "";
  let runId = "";

  try {
    await step("privacy policy page", async () => {
      await page.goto(`${BASE}/privacy`);
      await page.getByRole("heading", { level: 1, name: "Privacy Policy" }).waitFor();
      await audit(page, "00-privacy");
    });

    await step("sign up", async () => {
      await page.goto(`${BASE}/signup`);
      check(await page.locator('a[href="/privacy"]').count() > 0, "sign-up does not link the privacy policy");
      await audit(page, "01-signup");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Display name (optional)").fill("Journey");
      await page.getByLabel("Password", { exact: true }).fill(password);
      await page.locator("#signup-submit").click();
      await page.waitForURL(`${BASE}/pilots`);
      await audit(page, "02-pilots-empty");
    });

    await step("connect a fake Slack", async () => {
      await page.goto(`${BASE}/connectors`);
      await page.getByLabel("Kind").selectOption("slack");
      await page.getByLabel("Name").fill("slack");
      await page.getByLabel("Value").fill(SLACK_URL);
      await page.locator("#connect-submit").click();
      await page.locator('tr[data-connector="slack"]').waitFor();
      check(!(await page.content()).includes(SLACK_URL), "the connector value is shown again");
      await page.getByRole("button", { name: "Test slack" }).click();
      await page.locator("#test-result").waitFor();
      await audit(page, "03-connectors");
    });

    let secret = "";
    let webhookUrl = "";
    await step("create a Pilot with an approval step", async () => {
      await page.goto(`${BASE}/pilots/new`);
      await page.getByLabel("Title").fill("Tell the team about big orders");
      await page.getByLabel("Description").fill("Ask first, then post the order to Slack.");
      await page.locator("#new_step_kind").selectOption("approval");
      await page.locator("#add-step").click();
      await page.locator("#steps-0-approval-message").fill("Post order {{ trigger.order }} to Slack?");
      await page.locator("#new_step_kind").selectOption("slack");
      await page.locator("#add-step").click();
      await page.locator("#steps-1-slack-text").fill("New order {{ trigger.order }} from {{ trigger.customer }}");
      await audit(page, "04-editor");
      await page.locator("#save-pilot").click();
      await page.locator("#webhook-secret").waitFor();
      secret = (await page.locator("#webhook-secret").textContent()).trim();
      webhookUrl = (await page.locator("#webhook-url").textContent()).trim();
      check(secret.startsWith("whsec_"), `unexpected secret ${secret.slice(0, 6)}…`);
      pilotId = webhookUrl.split("/hooks/")[1];
      check(/^[0-9a-f-]{36}$/.test(pilotId), `no Pilot id in ${webhookUrl}`);
      await audit(page, "05-pilot-created");
      await page.goto(`${BASE}/pilots/${pilotId}`);
      check((await page.locator("#webhook-secret").count()) === 0, "the secret is shown again");
    });

    await step("trigger it by a signed webhook", async () => {
      await sendWebhook(webhookUrl, pilotId, secret);
      const deadline = Date.now() + RUN_TIMEOUT;
      for (;;) {
        await page.goto(`${BASE}/pilots/${pilotId}/runs`);
        const link = page.locator("table#runs tbody a").first();
        if ((await link.count()) > 0) {
          runId = (await link.getAttribute("href")).split("/runs/")[1];
          break;
        }
        check(Date.now() < deadline, "no run appeared");
        await page.waitForTimeout(500);
      }
      await audit(page, "06-runs");
    });

    await step("watch the run pause live", async () => {
      await page.goto(`${BASE}/runs/${runId}`);
      await page.locator('#run-status[data-status="awaiting_approval"]').waitFor({ timeout: RUN_TIMEOUT });
      await page.locator("#approval-needed").waitFor({ state: "visible" });
      await audit(page, "07-run-awaiting-approval");
    });

    await step("approve", async () => {
      await page.locator("#go-approvals").click();
      await page.waitForURL(`${BASE}/approvals`);
      await audit(page, "08-approvals");
      const card = page.locator(`li[data-run-id="${runId}"]`);
      await card.getByLabel("Comment (optional)").fill("Looks right.");
      await card.getByRole("button", { name: "Approve" }).click();
      await page.waitForURL(new RegExp(`/runs/${runId}`));
    });

    await step("the run finishes", async () => {
      await page.locator('#run-status[data-status="succeeded"]').waitFor({ timeout: RUN_TIMEOUT });
      const slack = page.locator('tr[data-step="slack"] .badge');
      check((await slack.textContent()).trim() === "succeeded", "the Slack step did not succeed");
      await audit(page, "09-run-succeeded");
    });

    await step("export", async () => {
      await page.goto(`${BASE}/pilots/${pilotId}`);
      const [download] = await Promise.all([page.waitForEvent("download"), page.locator("#export-pilot").click()]);
      const doc = JSON.parse(readFileSync(await download.path(), "utf8"));
      check(doc.format === "bizops.pilot/v1", `export format ${doc.format}`);
      check(!JSON.stringify(doc).includes("whsec_"), "the export carries a secret");
      writeFileSync(join(SHOTS, "pilot-export.json"), JSON.stringify(doc, null, 2));
      await page.goto(`${BASE}/account`);
      const [all] = await Promise.all([page.waitForEvent("download"), page.locator("#export-account").click()]);
      const account = JSON.parse(readFileSync(await all.path(), "utf8"));
      check(account.pilots.length === 1, "the account export misses the Pilot");
    });

    await step("change password", async () => {
      await page.goto(`${BASE}/account`);
      await audit(page, "10-account");
      await page.getByLabel("Current password").fill(password);
      await page.getByLabel("New password", { exact: true }).fill(newPassword);
      await page.getByLabel("New password again").fill(newPassword);
      await page.locator("#change-password").click();
      await page.getByRole("status").filter({ hasText: "Password changed" }).waitFor();
      // Still signed in with the fresh session.
      await page.goto(`${BASE}/pilots`);
      check(page.url() === `${BASE}/pilots`, "signed out after the password change");
    });

    await step("delete the account", async () => {
      await page.goto(`${BASE}/account`);
      await page.locator("#password").fill(newPassword);
      await page.getByLabel("I understand that this deletes everything and cannot be undone").check();
      await page.locator("#delete-account").click();
      await page.waitForURL(/\/signin\?notice=account_deleted/);
      await audit(page, "11-signin-after-delete");
      await page.getByLabel("Email").fill(email);
      await page.getByLabel("Password").fill(newPassword);
      await page.locator("#signin-submit").click();
      await page.locator("#form-error").waitFor();
      check(page.url().startsWith(`${BASE}/signin`), "a deleted account signed in");
    });

    await step("exactly one cookie name was ever set", async () => {
      const names = [...seenCookieNames];
      check(names.length === 1 && COOKIE_NAMES.has(names[0]), `cookie names: ${JSON.stringify(names)}`);
      const stored = (await context.cookies()).map((c) => c.name);
      check(stored.every((n) => n === names[0]), `stored cookies: ${JSON.stringify(stored)}`);
    });
  } finally {
    await context.close();
    rmSync(profile, { recursive: true, force: true });
    console.log(`${results.passed} passed, ${results.failed} failed`);
  }
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
