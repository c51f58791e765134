// The browser terminal ua serves at /instance/{id}: xterm.js speaking the
// terminado codec over /instance/{id}/ws. Reconnects by itself after a
// network drop (the server keeps the shell for its grace period).
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
        default: {
          // 1001 (server restarting), 1006 (network drop), 1011: retry with backoff.
          const delay = Math.min(1000 * 2 ** retries, 10000);
          retries += 1;
          show(event.code === 1001 ? "The server is restarting; reconnecting…" : "Connection lost; reconnecting…");
          setTimeout(connect, delay);
        }
      }
    };
  }

  term.onData((data) => send(["stdin", data]));
  term.onResize(sendSize);
  window.addEventListener("resize", () => fit.fit());
  connect();
  term.focus();
})();
