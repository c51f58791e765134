// The pages ua serves: /instance/{id} (a known instance) and
// /start#<sealed spec> (posts the spec from the fragment, which no request
// line carries, shows the progress, opens the terminal). ?mode=observe: a
// read-only view. The terminal itself is UaTerminal (ua-terminal.js).
"use strict";

(function () {
  const params = new URLSearchParams(location.search);
  const observing = params.get("mode") === "observe";
  const wsBase = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  const root = document.getElementById("ua");
  const options = {
    httpBase: "",
    wsBase,
    observing,
    focus: true,
    screenReader: params.get("screenreader") === "1",
  };
  if (location.pathname === "/start") {
    const spec = decodeURIComponent(location.hash.slice(1)).trim();
    if (!spec) {
      document.querySelector(".ua-message").textContent =
        "This link has no assignment in it. Open the link you were given again, whole.";
      document.getElementById("overlay").hidden = false;
      return;
    }
    options.spec = spec;
    options.route = params.get("route") || "";
    options.onAnswer = (body) => {
      if (body.assignment) document.title = body.assignment + " — terminal";
    };
    if (!observing) {
      const reset = document.createElement("button");
      reset.type = "button";
      reset.textContent = "Reset…";
      reset.setAttribute("data-tool", "reset");
      reset.addEventListener("click", () => window.uaSession.confirmReset());
      options.toolbarExtra = [reset];
    }
  } else {
    options.instanceID = location.pathname.split("/").filter(Boolean)[1];
  }
  if (observing) document.title = "Terminal (read-only)";
  const session = new UaTerminal.Session(root, options);
  window.uaSession = session; // for tests and debugging
  window.uaTerminal = session.term;
  session.term.focus();
})();
