// The pages ua serves: /instance/{id} (a known instance) and
// /start#<sealed spec> (posts the spec from the fragment, which no request
// line carries, shows the progress, opens the terminal). ?mode=observe: a
// read-only view. The terminal itself is UaTerminal (ua-terminal.js); the
// "Check my work" button and its feedback are UaCheck (ua-check.js), shown
// when the assignment has a check: the instance page's <meta name="ua-check">
// says so, the start page learns it from the answer to POST /spec. Upload
// (a button, or files dropped on the terminal) and Download are UaFiles
// (ua-files.js); neither is made in observe mode. The instance's terminals
// as tabs are UaTabs (ua-tabs.js), which the session makes itself.
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
    toolbarExtra: [],
  };
  let session = null;
  const meta = document.querySelector('meta[name="ua-check"]');
  const instanceID = () =>
    session && session.instanceID
      ? Promise.resolve(session.instanceID)
      : Promise.reject(new Error("the terminal has not started yet"));
  const refit = () => window.requestAnimationFrame(() => session && session.fit());
  const check =
    observing || !window.UaCheck
      ? null
      : new UaCheck.Panel({
          httpBase: "",
          instanceID,
          root,
          available: !!meta && meta.getAttribute("content") === "true",
          onLayout: refit,
        });
  if (check) options.toolbarExtra.push(check.button);
  const files =
    observing || !window.UaFiles
      ? null
      : new UaFiles.Panel({ httpBase: "", instanceID, root, dropTarget: root, onLayout: refit });
  if (files) options.toolbarExtra.push(files.controls);
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
      if (check) check.setAvailable(body.check === true);
    };
    if (!observing) {
      const reset = document.createElement("button");
      reset.type = "button";
      reset.textContent = "Reset…";
      reset.setAttribute("data-tool", "reset");
      reset.addEventListener("click", () => window.uaSession.confirmReset());
      options.toolbarExtra.push(reset);
    }
  } else {
    options.instanceID = location.pathname.split("/").filter(Boolean)[1];
  }
  if (observing) document.title = "Terminal (read-only)";
  session = new UaTerminal.Session(root, options);
  if (files) root.appendChild(files.region);
  if (check) root.appendChild(check.region);
  window.uaSession = session; // for tests and debugging
  window.uaCheck = check;
  window.uaFiles = files;
  window.uaTerminal = session.term;
  session.term.focus();
})();
