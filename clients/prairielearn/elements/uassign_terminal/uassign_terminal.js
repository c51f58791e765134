/*
 * <uassign_terminal>: a terminal from a ua server, in the browser.
 *
 * The terminal itself is UaTerminal.Session (vendor/ua-terminal.js, the same
 * file as ua's own pages: web/src/ua-terminal.js): it posts the sealed spec
 * to {http-base}/spec?progress (with ?route={data-route} when server.py
 * passed the spec's route token), shows the phases of a first start, opens
 * {ws-base}/instance/{id}/ws, says why a close happened and reconnects, and
 * carries the clipboard keys, the phone key row and the accessibility
 * settings. This file adds what is PrairieLearn's:
 *
 *   - read-only mode (data-mode="observe": staff views, closed assessments):
 *     POST {http-base}/spec?mode=observe and a websocket with ?mode=observe;
 *   - the Reset button of the element's toolbar (with confirmation);
 *   - graded files (data-graded-files): a submission of the question's form
 *     first fetches {http-base}/instance/{id}/files?path=... into a hidden
 *     field, which the controller's parse() turns into submitted_answers["_files"];
 *   - data-screen-reader="true" (the screen-reader attribute) turns xterm.js's
 *     screen-reader mode on.
 *
 * Each element is mounted by the inline script rendered with it (keyed by its
 * uuid), so elements inserted after the page loaded start too.
 *
 * Needs window.Terminal, window.FitAddon (vendor/xterm-bundle.js) and
 * window.UaTerminal (vendor/ua-terminal.js).
 */
(function () {
  "use strict";

  if (window.UassignTerminal) {
    return;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function Element(root) {
    var observing = root.getAttribute("data-mode") === "observe";
    var gradedFiles = parseJson(root.getAttribute("data-graded-files") || "[]") || [];
    var session = new window.UaTerminal.Session(root, {
      spec: root.getAttribute("data-spec"),
      route: root.getAttribute("data-route") || "",
      httpBase: root.getAttribute("data-http-base"),
      wsBase: root.getAttribute("data-ws-base"),
      observing: observing,
      screenReader: root.getAttribute("data-screen-reader") === "true",
      notRunningDetail:
        gradedFiles.length > 0 ? "The files of the last submission are shown below, if there was one." : "",
    });
    session.gradedFiles = gradedFiles;
    session.wrapper = root.parentNode;
    var resetButton = session.wrapper && session.wrapper.querySelector(".uassign-terminal-reset");
    if (resetButton && !observing) {
      resetButton.addEventListener("click", function () {
        session.confirmReset();
      });
    }
    if (!observing && gradedFiles.length > 0) {
      hookSubmission(session);
    }
    return session;
  }

  // The graded files as the controller's parse() reads them:
  // {"files": [{"name", "contents"}], "missing": [...]} or {"error": "..."}.
  function collectFiles(self) {
    return self.findInstance()
      .then(function (id) {
        var query = self.gradedFiles
          .map(function (name) {
            return "path=" + encodeURIComponent(name);
          })
          .join("&");
        return fetch(self.httpBase + "/instance/" + encodeURIComponent(id) + "/files?" + query, {
          mode: "cors",
          credentials: "omit",
          cache: "no-store",
        });
      })
      .then(function (response) {
        return response.text().then(function (text) {
          var body = parseJson(text);
          if (response.ok && body && Array.isArray(body.files)) {
            return text;
          }
          return JSON.stringify({ error: (body && body.error) || "HTTP " + response.status });
        });
      })
      .catch(function (e) {
        return JSON.stringify({ error: String((e && e.message) || e) });
      });
  }

  // Holds the question form's submission until the graded files are in
  // its hidden field, then submits with the same button.
  function hookSubmission(self) {
    var field = self.wrapper && self.wrapper.querySelector("input.uassign-terminal-files");
    var form = field && field.form;
    if (!form) {
      return;
    }
    var ready = false;
    form.addEventListener(
      "submit",
      function (event) {
        if (ready) {
          ready = false;
          return;
        }
        event.preventDefault();
        event.stopImmediatePropagation();
        var submitter = event.submitter || null;
        self.root.setAttribute("data-submitting", "true");
        collectFiles(self).then(function (json) {
          field.value = json;
          ready = true;
          self.root.removeAttribute("data-submitting");
          if (form.requestSubmit) {
            form.requestSubmit(submitter);
          } else {
            if (submitter && submitter.name) {
              var extra = document.createElement("input");
              extra.type = "hidden";
              extra.name = submitter.name;
              extra.value = submitter.value;
              form.appendChild(extra);
            }
            form.submit();
          }
        });
      },
      true
    );
  }

  function mount(root) {
    if (!root || root.uassignTerminal) {
      return root ? root.uassignTerminal : null;
    }
    if (typeof window.Terminal !== "function" || !window.FitAddon || !window.UaTerminal) {
      var message = root.querySelector(".uassign-terminal-message");
      if (message) {
        message.textContent = "The terminal could not load (xterm.js is missing).";
      }
      return null;
    }
    root.uassignTerminal = new Element(root);
    return root.uassignTerminal;
  }

  // A fallback for pages that drop inline scripts; each element normally
  // mounts itself from its own inline script.
  function mountAll() {
    var roots = document.querySelectorAll(".uassign-terminal[data-spec]");
    for (var i = 0; i < roots.length; i++) {
      mount(roots[i]);
    }
  }

  window.UassignTerminal = { mount: mount, mountAll: mountAll };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountAll);
  } else {
    mountAll();
  }
})();
