// Usage: node features.mjs URL CHECK...
// The behaviours of UaTerminal (web/src/ua-terminal.js), checked the same
// way on ua's own page and on the PrairieLearn element's page (the URL
// opens either; the root is the element with data-state). CHECKs:
//   progress  the start shows the create's phases, "building" among them
//   desktop   1280x800: no key row; screenshot
//   phone     390x844: the key row, sticky Ctrl (Ctrl then c: ^C), arrows; screenshot
//   keyboard  Tab reaches the toolbar, Alt+F10 leaves the terminal, Enter toggles
//   reader    screen-reader mode from the toolbar, kept after a reload
//   clipboard Ctrl+Shift+C copies the selection; Ctrl+Shift+V pastes (no ^V)
//   paste     a 2 MiB paste arrives intact, on one websocket (never 1009)
//   expiry    "When it expires" says how long the environment is kept
//   observe   a second, read-only page (?mode=observe) sees the output and cannot type
//   title     the page's title starts with TITLE
//   oom       a program that fills memory is killed: the terminal says so, with OOM_MIB
//   idle      the idle warning shows, a key hides it; then the idle close in words
//   tabs      "+" opens terminal 2; a fifo's reader in one tab gets the other's
//             write (marked while hidden); arrow keys switch; a reload brings
//             both back; the phone's key row types into the tab shown; × closes one (DELETE: no longer listed); the fifth
//             terminal is refused in words
// SHOTS=dir: where screenshots go (desktop.png, phone.png, tabs.png).
import { createHash } from "node:crypto";
import { chromium } from "playwright-core";

const [url, ...checks] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(url).origin });
const page = await context.newPage();
const sockets = [];
const closes = [];
page.on("websocket", (ws) => {
  sockets.push(ws.url());
  ws.on("close", () => closes.push(ws.url()));
});
// Every phase the overlay shows, recorded from the first moment.
await page.addInitScript(() => {
  window.uaPhases = [];
  new MutationObserver(() => {
    const root = document.querySelector("[data-phase]");
    const phase = root && root.getAttribute("data-phase");
    if (phase && window.uaPhases[window.uaPhases.length - 1] !== phase) window.uaPhases.push(phase);
  }).observe(document, { subtree: true, attributes: true, attributeFilter: ["data-phase"] });
});

const ROOT = "document.querySelector('[data-state]')";
const SESSION = `(window.uaSession || ${ROOT}.uassignTerminal)`;
const js = (code) => page.evaluate(code);
const screen = () => js(`(() => { const b = ${SESSION}.term.buffer.active; const l = [];
  for (let i = 0; i < b.length; i++) l.push(b.getLine(i).translateToString(true)); return l.join("\\n"); })()`);
const until = async (code, what, ms = 30000) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (await js(code).catch(() => false)) return;
    await page.waitForTimeout(100);
  }
  throw new Error(`${what}: not seen in ${ms} ms. State: ${await js(`${ROOT} && ${ROOT}.getAttribute('data-state')`)}; ` +
    `message: ${await js(`(document.querySelector('.ua-message') || {}).textContent`)}; screen:\n${await screen().catch(() => "")}`);
};
const waitScreen = (text, what, ms) => until(`(() => { const b = ${SESSION}.term.buffer.active; let s = "";
  for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + "\\n"; return s.includes(${JSON.stringify(text)}); })()`, what, ms);
const open = () => until(`${ROOT} && ${ROOT}.getAttribute('data-state') === 'open'`, "the terminal opens", 120000);
const focusTerm = () => js(`${SESSION}.term.focus()`);
const run = async (command, expect, what, ms) => {
  await focusTerm();
  await page.keyboard.type(command);
  await page.keyboard.press("Enter");
  await waitScreen(expect, what, ms);
};
const report = [];
// Terminals as tabs (ua-tabs.js): the shown tab's session, a tab by name.
const TABS = `${SESSION}.tabs`;
const tab = (name) => `document.querySelector('.ua-tab[data-terminal="${name}"]')`;
const tabScreen = (name, text) => `(() => { const e = ${TABS}.find(${JSON.stringify(name)}); if (!e) return false;
  const b = e.session.term.buffer.active; let s = "";
  for (let i = 0; i < b.length; i++) s += b.getLine(i).translateToString(true) + "\\n"; return s.includes(${JSON.stringify(text)}); })()`;
const tabLines = (name, line) => `(() => { const b = ${TABS}.find(${JSON.stringify(name)}).session.term.buffer.active; let n = 0;
  for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true) === ${JSON.stringify(line)}) n++; return n; })()`;
const tabOpen = (name) => until(`(() => { const e = ${TABS}.find(${JSON.stringify(name)}); return !!e && e.session.state === 'open'; })()`,
  `terminal ${name} opens`, 60000);
const typeIn = async (name, line) => {
  await js(`${TABS}.find(${JSON.stringify(name)}).session.term.focus()`);
  await page.keyboard.type(line);
  await page.keyboard.press("Enter");
};
const listed = () => js(`fetch(${SESSION}.httpBase + '/instance/' + ${SESSION}.instanceID + '/terminals').then((r) => r.json())
  .then((b) => b.terminals.filter((t) => t.running).map((t) => t.name).join(","))`);
const newTab = async (name) => {
  await page.click(".ua-tab-new");
  await tabOpen(name);
  if (await js(`${tab(name)}.getAttribute('aria-selected')`) !== "true") throw new Error(`the new tab ${name} is not shown`);
};

const CHECKS = {
  async progress() {
    const phases = await js("window.uaPhases");
    if (!phases.includes("building")) throw new Error(`phases seen: ${JSON.stringify(phases)}; no "building"`);
    report.push(`phases ${phases.join(">")}`);
  },
  async desktop() {
    await page.setViewportSize({ width: 1280, height: 800 });
    await page.waitForTimeout(400);
    if (await js("getComputedStyle(document.querySelector('.ua-keys')).display") !== "none") {
      throw new Error("the key row shows on a desktop");
    }
    await run("echo desk-$((40+2))", "desk-42", "typed output on a desktop");
    if (process.env.SHOTS) await page.screenshot({ path: `${process.env.SHOTS}/desktop.png` });
    report.push("desktop");
  },
  async phone() {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400);
    if (await js("getComputedStyle(document.querySelector('.ua-keys')).display") === "none") {
      throw new Error("no key row at 390 px");
    }
    const cols = await js(`${SESSION}.term.cols`);
    await run("stty size", ` ${cols}`, "the terminal refits to the phone's width");
    // Sticky Ctrl then "c" is ^C: the half-typed line is dropped.
    await focusTerm();
    await page.keyboard.type("echo never-run");
    await page.click(".ua-keys [data-key=ctrl]");
    if (await js("document.querySelector('.ua-keys [data-key=ctrl]').getAttribute('aria-pressed')") !== "true") {
      throw new Error("Ctrl is not shown as held");
    }
    await page.keyboard.type("c");
    await run("echo after-ctrl-c", "after-ctrl-c", "the shell after ^C");
    if ((await screen()).includes("never-run\n")) throw new Error("^C from the key row did not interrupt");
    // Up arrow from the key row recalls the last command.
    await page.click(".ua-keys [data-key=up]");
    await page.keyboard.press("Enter");
    await until(`(${SESSION}.term.buffer.active.length > 0) && (() => { const b = ${SESSION}.term.buffer.active; let n = 0;
      for (let i = 0; i < b.length; i++) if (b.getLine(i).translateToString(true) === "after-ctrl-c") n++; return n >= 2; })()`,
    "the Up key of the key row recalls the command");
    if (process.env.SHOTS) await page.screenshot({ path: `${process.env.SHOTS}/phone.png` });
    await page.setViewportSize({ width: 1280, height: 800 });
    report.push(`phone ${cols} cols`);
  },
  async keyboard() {
    await focusTerm();
    await page.keyboard.press("Alt+F10");
    const tool = await js("document.activeElement && document.activeElement.getAttribute('data-tool')");
    if (!tool) throw new Error("Alt+F10 did not reach the toolbar");
    // Tab through the toolbar to "High contrast", Enter: on; Enter again: off.
    for (let i = 0; i < 6; i++) {
      if (await js("document.activeElement.getAttribute('data-tool')") === "contrast") break;
      await page.keyboard.press("Tab");
    }
    if (await js("document.activeElement.getAttribute('data-tool')") !== "contrast") {
      throw new Error("Tab did not reach the contrast button");
    }
    await page.keyboard.press("Enter");
    if (!(await js(`${ROOT}.classList.contains('ua-contrast')`))) throw new Error("Enter did not turn high contrast on");
    await page.keyboard.press("Enter");
    // The overlay's button takes the focus when a close needs an answer.
    report.push("keyboard");
  },
  async reader() {
    await page.click("[data-tool=screenReader]");
    await until(`${SESSION}.term.options.screenReaderMode === true && !!document.querySelector('.xterm-accessibility')`,
      "screen-reader mode on");
    await page.reload();
    await open();
    if (!(await js(`${SESSION}.term.options.screenReaderMode`))) throw new Error("screen-reader mode not kept after a reload");
    await run("echo reader-$((3*3))", "reader-9", "typing in screen-reader mode");
    await until("document.querySelector('.xterm-accessibility-tree').textContent.includes('reader-9')",
      "the output in the accessibility tree", 10000);
    await page.click("[data-tool=screenReader]");
    report.push("screen reader");
  },
  async clipboard() {
    await run("echo clip-$((5*5))", "clip-25", "text to copy");
    await js(`(() => { const t = ${SESSION}.term; const b = t.buffer.active;
      for (let i = b.length - 1; i >= 0; i--) if (b.getLine(i).translateToString(true) === "clip-25") { t.select(0, i, 7); return; } })()`);
    await focusTerm();
    await page.keyboard.press("Control+Shift+C");
    await until("navigator.clipboard.readText().then((t) => t === 'clip-25')", "Ctrl+Shift+C copied the selection", 5000);
    await page.keyboard.type("echo pasted:");
    await page.keyboard.press("Control+Shift+V");
    await page.keyboard.press("Enter");
    await waitScreen("pasted:clip-25", "Ctrl+Shift+V pasted");
    report.push("clipboard");
  },
  async paste() {
    const line = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ-the-quick-brown-fox-jumps-over\n";
    const text = line.repeat(Math.ceil((2 << 20) / line.length));
    const md5 = createHash("md5").update(text).digest("hex");
    const before = sockets.length;
    await run("stty -echo; cat > /tmp/pasted; stty echo; echo got-$(wc -c < /tmp/pasted)", "", "cat waits");
    await page.waitForTimeout(300);
    await js(`(() => { const data = new DataTransfer(); data.setData("text/plain", ${JSON.stringify(text)});
      document.querySelector('.xterm-helper-textarea').dispatchEvent(new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true })); })()`);
    await page.keyboard.press("Control+D");
    await waitScreen(`got-${text.length}`, `all ${text.length} bytes arrived`, 60000);
    await run("md5sum /tmp/pasted", md5, "the paste arrived intact");
    if (sockets.length !== before || closes.length) throw new Error(`the socket was replaced during the paste: ${closes.length} closed`);
    report.push(`paste ${text.length} bytes`);
  },
  async oom() {
    // A child shell fills memory: the kernel stops it, the shell lives on.
    await run("sh -c 'x=$(head -c 200000000 /dev/zero | tr \"\\\\0\" a)'; echo after-oom-$((2+2))", "after-oom-4", "the shell after the kill", 60000);
    await waitScreen("out of memory", "the out-of-memory notice", 20000);
    const limit = process.env.OOM_MIB;
    if (limit) await waitScreen(`more than the ${limit} MiB`, "the limit in the notice", 5000);
    report.push("out-of-memory notice");
  },
  async expiry() {
    await page.click("[data-tool=expiry]");
    const said = await js("document.querySelector('.ua-notice').textContent");
    if (!said.includes("kept for")) throw new Error(`expiry says: ${said}`);
    await focusTerm();
    await page.keyboard.press("Space"); // any key hides the notice
    report.push(`expiry: ${said}`);
  },
  async observe() {
    // A second page, read-only, on the same terminal (/start?mode=observe#spec).
    await run("echo watched-$((6*6))", "watched-36", "output to watch");
    const watch = await context.newPage();
    const u = new URL(url);
    u.searchParams.set("mode", "observe");
    await watch.goto(u.toString());
    const on = (code) => watch.evaluate(code);
    const deadline = Date.now() + 30000;
    while (!(await on("window.uaSession && window.uaSession.state === 'open'").catch(() => false))) {
      if (Date.now() > deadline) throw new Error("the observer never opened");
      await watch.waitForTimeout(100);
    }
    if (await on("!!document.querySelector('[data-tool=reset]')")) throw new Error("the observer has Reset");
    if (!(await on("window.uaSession.term.options.disableStdin"))) throw new Error("the observer can type");
    if (!(await on("document.title")).includes("read-only")) throw new Error("the observer's title does not say read-only");
    await run("echo live-$((7*7))", "live-49", "the student's output");
    const seen = Date.now() + 10000;
    while (!(await on(`(() => { const b = window.uaSession.term.buffer.active; let t = "";
      for (let i = 0; i < b.length; i++) t += b.getLine(i).translateToString(true) + "\\n"; return t.includes("live-49"); })()`))) {
      if (Date.now() > seen) throw new Error("the observer did not see the student's output");
      await watch.waitForTimeout(100);
    }
    await watch.close();
    report.push("observe");
  },
  async title() {
    const title = await page.title();
    if (!title.startsWith(process.env.TITLE || "")) throw new Error(`title: ${title}`);
    report.push(`title ${title}`);
  },
  async tabs() {
    await newTab("2");
    await typeIn("2", "rm -f /tmp/p; mkfifo /tmp/p; cat /tmp/p | sed s/^/got:/");
    await page.waitForTimeout(300);
    await page.click(`.ua-tab[data-terminal="main"]`);
    await typeIn("main", "echo hi > /tmp/p");
    await until(tabScreen("2", "got:hi"), "the reader in tab 2 gets the line of tab main");
    await until(`${tab("2")}.getAttribute('data-activity') === 'true'`, "tab 2 marked for its output while hidden", 5000);
    // The keyboard: a tab has the focus, Right shows the next one, Left and Home the first.
    await js(`${tab("main")}.focus()`);
    await page.keyboard.press("ArrowRight");
    await until(`${tab("2")}.getAttribute('aria-selected') === 'true' && document.activeElement === ${tab("2")}`,
      "ArrowRight shows and focuses tab 2", 5000);
    if (await js(`${tab("2")}.hasAttribute('data-activity')`)) throw new Error("the shown tab is still marked");
    if (await js(`!document.querySelector('[data-terminal="main"][role=tabpanel]').hidden`)) throw new Error("main's pane shows under tab 2");
    await page.keyboard.press("Home");
    await until(`${tab("main")}.getAttribute('aria-selected') === 'true'`, "Home shows main", 5000);
    if (await listed() !== "2,main") throw new Error(`listed: ${await listed()}`);
    if (process.env.SHOTS) await page.screenshot({ path: `${process.env.SHOTS}/tabs.png` });
    // A reload finds both tabs again, tab 2 with its output.
    await page.reload();
    await open();
    await tabOpen("2");
    await until(tabScreen("2", "got:hi"), "tab 2's output again after the reload");
    await page.click(`.ua-tab[data-terminal="2"]`);
    await typeIn("2", "echo two-$((1+1))");
    await until(tabScreen("2", "two-2"), "typing in tab 2 after the reload");
    // On a phone the key row types into the tab shown: Up recalls tab 2's command.
    await page.setViewportSize({ width: 390, height: 844 });
    await page.waitForTimeout(400);
    await page.click(".ua-keys [data-key=up]");
    await page.keyboard.press("Enter");
    await until(`${tabLines("2", "two-2")} >= 2`, "the key row's Up in tab 2", 10000);
    await page.setViewportSize({ width: 1280, height: 800 });
    // × hangs terminal 2 up: it is no longer listed, its tab is gone, main shows.
    await page.click(`.ua-tab[data-terminal="2"] + .ua-tab-close`);
    await until(`!${tab("2")} && ${tab("main")}.getAttribute('aria-selected') === 'true'`, "tab 2 closed", 10000);
    const deadline = Date.now() + 10000;
    while ((await listed()) !== "main") {
      if (Date.now() > deadline) throw new Error(`after ×, listed: ${await listed()}`);
      await page.waitForTimeout(200);
    }
    // main, 2, 3, 4: the fifth is refused (409 before the upgrade), in words.
    for (const name of ["2", "3", "4"]) await newTab(name);
    await page.click(".ua-tab-new");
    const word = "document.querySelector('.ua-tab-message')";
    await until(`!${word}.hidden && ${word}.textContent.includes('Close one first')`, "the refusal of a fifth terminal", 30000);
    if (await js(`!!${tab("5")}`)) throw new Error("a tab for the refused terminal");
    const said = await js(`${word}.textContent`);
    await page.click(`.ua-tab[data-terminal="main"]`);
    await run("echo still-$((2+3))", "still-5", "main after the refusal");
    report.push(`tabs (refusal: ${said})`);
  },
  async idle() {
    await until(`!document.querySelector('.ua-notice').hidden`, "the idle warning", 30000);
    const said = await js("document.querySelector('.ua-notice').textContent");
    if (!said.includes("closes in")) throw new Error(`idle notice says: ${said}`);
    await focusTerm();
    await page.keyboard.press("Space");
    if (!(await js("document.querySelector('.ua-notice').hidden"))) throw new Error("a key did not hide the idle notice");
    await until(`${ROOT}.getAttribute('data-close-reason') === 'idle'`, "the idle close", 30000);
    const message = await js("document.querySelector('.ua-message').textContent");
    if (!message.includes("nothing happened")) throw new Error(`idle close says: ${message}`);
    report.push("idle warning and close");
  },
};

let failed = false;
try {
  await page.goto(url);
  await open();
  for (const check of checks) {
    if (!CHECKS[check]) throw new Error(`no check ${check}`);
    await CHECKS[check]();
  }
  console.log(`PASS: ${report.join("; ")}`);
} catch (error) {
  failed = true;
  console.error(`FAIL: ${error.message}`);
} finally {
  await browser.close();
}
process.exit(failed ? 1 : 0);
