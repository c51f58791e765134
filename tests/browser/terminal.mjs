// Usage: node terminal.mjs BASE_URL INSTANCE_ID
// Opens ua's browser terminal in headless Chromium and checks that a typed
// command's output appears, a resize reaches `stty size`, and a reload lands
// back in the same shell. Exits non-zero with a reason on any failure.
// CHROMIUM_ARGS: extra Chromium flags, space-separated (tests/proxies.rs:
// trust a throw-away certificate by its SPKI hash).
import { chromium } from "playwright-core";

const [base, instance] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ...(process.env.CHROMIUM_ARGS || "").split(" ").filter(Boolean)],
});
let failed = false;
try {
  const page = await browser.newPage({ viewport: { width: 1000, height: 700 } });
  // The schemes of the terminal's websockets (ws: or wss:), for the report.
  const schemes = new Set();
  page.on("websocket", (ws) => schemes.add(new URL(ws.url()).protocol));
  const screen = () => page.evaluate(() => {
    const buffer = window.uaTerminal.buffer.active;
    const lines = [];
    for (let i = 0; i < buffer.length; i++) lines.push(buffer.getLine(i).translateToString(true));
    return lines.join("\n");
  });
  const waitFor = async (text, what) => {
    const deadline = Date.now() + 20000;
    while (Date.now() < deadline) {
      if ((await screen()).includes(text)) return;
      await page.waitForTimeout(100);
    }
    throw new Error(`${what}: ${JSON.stringify(text)} never appeared. Screen:\n${await screen()}`);
  };
  const run = async (command, expect, what) => {
    await page.keyboard.type(command);
    await page.keyboard.press("Enter");
    await waitFor(expect, what);
  };

  await page.goto(`${base}/instance/${instance}`);
  await page.waitForFunction(() => window.uaTerminal !== undefined);
  await waitFor("$", "the prompt");
  await page.click("#terminal");
  await run("echo typed-$((6*7))", "typed-42", "typed command output");

  await page.setViewportSize({ width: 640, height: 360 });
  await page.waitForTimeout(500);
  const size = await page.evaluate(() => [window.uaTerminal.rows, window.uaTerminal.cols]);
  await run("stty size", `${size[0]} ${size[1]}`, `stty size after resizing to ${size}`);

  await run("export MARK=reloaded-$((1+1))", "$", "export");
  await page.reload();
  await page.waitForFunction(() => window.uaTerminal !== undefined);
  await waitFor("$", "the prompt after reload");
  await page.click("#terminal");
  await run("echo mark=$MARK", "mark=reloaded-2", "the same shell after reload");
  console.log(`PASS: typed output, resize to ${size[0]}x${size[1]}, reload into the same shell; ` +
    `page ${new URL(page.url()).protocol} websockets ${[...schemes].join(",")}`);
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
