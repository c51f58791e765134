// Usage: node unavailable.mjs BASE_URL INSTANCE_ID
// ua's browser terminal behind HAProxy while the instance's node is down.
// Prints READY once the terminal works (then the caller stops the node),
// UNAVAILABLE once both the open terminal and a freshly loaded page say
// "The server is unavailable, retrying" (then the caller starts the node
// again), and PASS once the open terminal reconnected by itself into the
// instance (its files intact). Exits non-zero with a reason on any failure.
import { chromium } from "playwright-core";

const [base, instance] = process.argv.slice(2);
const url = `${base}/instance/${instance}`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
let failed = false;
try {
  const screen = (page) => page.evaluate(() => {
    const buffer = window.uaTerminal.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join("\n");
  });
  const until = async (check, what, seconds) => {
    const deadline = Date.now() + seconds * 1000;
    while (Date.now() < deadline) {
      try {
        if (await check()) return;
      } catch (e) {
        // the page is navigating (a Refresh): look again
      }
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
    throw new Error(`timed out waiting for ${what}`);
  };
  const run = async (page, command, expect, what) => {
    await page.click("#terminal");
    await page.keyboard.type(command);
    await page.keyboard.press("Enter");
    await until(async () => (await screen(page)).includes(expect), what, 30);
  };
  const overlay = (page) => page.evaluate(() => {
    const box = document.getElementById("overlay");
    return box && !box.hidden ? document.getElementById("overlay-text").textContent : "";
  });

  const page = await browser.newPage({ viewport: { width: 900, height: 600 } });
  await page.goto(url);
  await page.waitForFunction(() => window.uaTerminal !== undefined);
  await until(async () => (await screen(page)).includes("$"), "the prompt", 30);
  await run(page, "echo kept-$((6*7)) > kept.txt; echo written", "written", "a file written");
  console.log("READY");

  await until(async () => (await overlay(page)).includes("The server is unavailable, retrying"),
    "the open terminal to say the server is unavailable", 60);
  const fresh = await browser.newPage();
  await fresh.goto(url);
  const body = await fresh.textContent("body");
  if (!body.includes("The server is unavailable, retrying")) {
    throw new Error(`a page loaded while the node is down says: ${body}`);
  }
  await fresh.close(); // it would reload itself (Refresh) and take the terminal over
  console.log("UNAVAILABLE");

  await until(async () => (await overlay(page)) === "", "the open terminal to reconnect by itself", 120);
  await run(page, "cat kept.txt", "kept-42", "the instance's file after the node returned");
  console.log("PASS: unavailable, retrying; reconnected by itself; files intact");
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
