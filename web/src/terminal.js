// The browser terminal ua serves at /instance/{id}: xterm.js speaking the
// terminado codec over /instance/{id}/ws. Reconnects by itself after a
// network drop (the server keeps the shell for its grace period), and while
// the instance's server is unavailable (a node down behind HAProxy: 503).
"use strict";

(function () {
  const instanceId = location.pathname.split("/").filter(Boolean)[1];
  const wsUrl = (location.protocol === "https:" ? "wss://" : "ws://") + location.host +
    "/instance/" + encodeURIComponent(instanceId) + "/ws";

  const term = new Terminal({ cursorBlink: true, scrollback: 5000 });
  const fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  window.uaTerminal = term; // for tests and debugging
  fit.fit();

  const overlay = document.getElementById("overlay");
  const overlayText = document.getElementById("overlay-text");
  const overlayButton = document.getElementById("overlay-button");

  let socket = null;
  let retries = 0;
  let exited = false;

  function show(text, buttonLabel, action) {
    overlayText.textContent = text;
    overlayButton.hidden = !buttonLabel;
    if (buttonLabel) {
      overlayButton.textContent = buttonLabel;
      overlayButton.onclick = () => { overlay.hidden = true; action(); };
    }
    overlay.hidden = false;
  }

  function send(message) {
    if (socket && socket.readyState === WebSocket.OPEN) socket.send(JSON.stringify(message));
  }

  function sendSize() { send(["set_size", term.rows, term.cols]); }

  function connect() {
    exited = false;
    socket = new WebSocket(wsUrl);
    socket.onopen = () => { retries = 0; overlay.hidden = true; };
    socket.onmessage = (event) => {
      let message;
      try { message = JSON.parse(event.data); } catch (e) { return; }
      if (!Array.isArray(message)) return;
      if (message[0] === "setup") { term.reset(); sendSize(); }
      else if (message[0] === "stdout") term.write(message[1]);
      else if (message[0] === "disconnect") exited = true;
    };
    socket.onclose = (event) => {
      socket = null;
      switch (event.code) {
        case 1000:
          show(exited ? "The shell exited." : "The terminal closed.", "Start a new shell", connect);
          break;
        case 4001:
          show("This terminal was opened in another window or tab.", "Use it here", connect);
          break;
        case 4002:
          show("The terminal was closed after being idle.", "Reconnect", connect);
          break;
        case 4003:
          show("This environment was reset or has expired. Reload the assignment to get a new one.");
          break;
        case 1009:
          show("A message was too large for the server (paste less at once).", "Reconnect", connect);
          break;
        case 1001:
          retryLater("The server is restarting; reconnecting…");
          break;
        default:
          // 1006 (network drop, or the upgrade was refused), 1011. A browser
          // does not tell why an upgrade failed: the page's own address does.
          fetch(location.pathname, { cache: "no-store", headers: { Accept: "application/json" } })
            .then((response) => response.status, () => 0)
            .then((status) => {
              if (status === 404) {
                show("This environment was reset or has expired. Reload the assignment to get a new one.");
              } else if (status === 503 || status === 0) {
                retryLater("The server is unavailable, retrying…");
              } else {
                retryLater("Connection lost; reconnecting…");
              }
            });
      }
    };
  }

  // Connects again after a growing delay (1 s, 2 s, 4 s … at most 10 s).
  function retryLater(text) {
    const delay = Math.min(1000 * 2 ** retries, 10000);
    retries += 1;
    show(text);
    setTimeout(connect, delay);
  }

  term.onData((data) => send(["stdin", data]));
  term.onResize(sendSize);
  window.addEventListener("resize", () => fit.fit());
  connect();
  term.focus();
})();
