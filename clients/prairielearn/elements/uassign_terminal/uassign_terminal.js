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
 *     screen-reader mode on;
 *   - the "Check my work" button (UaCheck.Panel, vendor/ua-check.js), shown
 *     when POST /spec answers "check": true; with data-check-field (the
 *     check attribute) a save or submission first runs the check and puts
 *     {"result", "output"} (or {"error"}) into that hidden field, which
 *     parse() keeps for uassign.grade_check in grade();
 *   - Upload and Download (UaFiles.Panel, vendor/ua-files.js) in the
 *     element's toolbar, files dropped on the terminal uploaded; never in
 *     read-only mode.
 *
 * Each element is mounted by the inline script rendered with it (keyed by its
 * uuid), so elements inserted after the page loaded start too.
 *
 * Needs window.Terminal, window.FitAddon (vendor/xterm-bundle.js) and
 * window.UaTerminal (vendor/ua-terminal.js); window.UaCheck (vendor/ua-check.js),
 * window.UaFiles (vendor/ua-files.js).
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

  // A 429 at submission (the student checked a moment ago) waits this long
  // at most for the server's retryAfter, then tries once more.
  var MAX_CHECK_WAIT_S = 30;

  function Element(root) {
    var observing = root.getAttribute("data-mode") === "observe";
    var gradedFiles = parseJson(root.getAttribute("data-graded-files") || "[]") || [];
    var check = null;
    var session = new window.UaTerminal.Session(root, {
      spec: root.getAttribute("data-spec"),
      route: root.getAttribute("data-route") || "",
      httpBase: root.getAttribute("data-http-base"),
      wsBase: root.getAttribute("data-ws-base"),
      observing: observing,
      screenReader: root.getAttribute("data-screen-reader") === "true",
      notRunningDetail:
        gradedFiles.length > 0 ? "The files of the last submission are shown below, if there was one." : "",
      onAnswer: function (body) {
        if (check) {
          check.setAvailable(body.check === true);
        }
      },
    });
    session.gradedFiles = gradedFiles;
    session.wrapper = root.parentNode;
    check = observing ? null : makeCheck(session);
    session.check = check;
    session.files = observing ? null : makeFiles(session);
    var resetButton = session.wrapper && session.wrapper.querySelector(".uassign-terminal-reset");
    if (resetButton && !observing) {
      resetButton.addEventListener("click", function () {
        session.confirmReset();
      });
    }
    var tasks = [];
    var checkField = root.getAttribute("data-check-field");
    if (check && checkField) {
      tasks.push(checkTask(session, checkField));
    }
    if (!observing && gradedFiles.length > 0) {
      tasks.push(filesTask(session));
    }
    hookSubmission(session, tasks);
    return session;
  }

  function makeCheck(self) {
    var button = self.wrapper && self.wrapper.querySelector(".uassign-terminal-check-button");
    var region = self.wrapper && self.wrapper.querySelector(".uassign-terminal-check");
    if (!button || !region || !window.UaCheck) {
      return null;
    }
    return new window.UaCheck.Panel({
      httpBase: self.httpBase,
      button: button,
      region: region,
      root: self.root,
      instanceID: function () {
        return self.findInstance();
      },
    });
  }

  // Upload and Download: the controls first in the element's toolbar, the
  // messages under the terminal.
  function makeFiles(self) {
    var toolbar = self.wrapper && self.wrapper.querySelector(".uassign-terminal-toolbar");
    if (!toolbar || !window.UaFiles) {
      return null;
    }
    var files = new window.UaFiles.Panel({
      httpBase: self.httpBase,
      root: self.root,
      dropTarget: self.root,
      instanceID: function () {
        return self.findInstance();
      },
    });
    [files.uploadButton, files.downloadButton].forEach(function (b) {
      b.classList.add("btn", "btn-outline-secondary", "btn-sm"); // PrairieLearn's Bootstrap
    });
    toolbar.insertBefore(files.controls, toolbar.firstChild);
    self.root.parentNode.insertBefore(files.region, self.root.nextSibling);
    return files;
  }

  // {"result", "output"} of a fresh check for parse(), or {"error"}.
  function runCheck(self, waited) {
    return self.check.run().then(function (outcome) {
      if (outcome.ok) {
        return JSON.stringify({ result: outcome.body.result, output: outcome.body.output || "" });
      }
      if (!waited && (outcome.status === 429 || outcome.status === 409) && (outcome.retryAfter || 1) <= MAX_CHECK_WAIT_S) {
        return new Promise(function (resolve) {
          window.setTimeout(resolve, (outcome.retryAfter || 1) * 1000 + 250);
        }).then(function () {
          return runCheck(self, true);
        });
      }
      return JSON.stringify({ error: outcome.error || "HTTP " + outcome.status });
    });
  }

  function checkTask(self, name) {
    var field = self.wrapper && self.wrapper.querySelector('input.uassign-terminal-check-answer[name="' + name + '"]');
    return field
      ? function () {
          return runCheck(self, false).then(function (json) {
            field.value = json;
          });
        }
      : null;
  }

  function filesTask(self) {
    var field = self.wrapper && self.wrapper.querySelector("input.uassign-terminal-files");
    return field
      ? function () {
          return collectFiles(self).then(function (json) {
            field.value = json;
          });
        }
      : null;
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

  // Holds the question form's submission until every task (the check, the
  // graded files) has filled its hidden field, then submits with the same button.
  function hookSubmission(self, tasks) {
    tasks = tasks.filter(Boolean);
    var field = self.wrapper && self.wrapper.querySelector("input.uassign-terminal-files, input.uassign-terminal-check-answer");
    var form = field && field.form;
    if (!form || tasks.length === 0) {
      return;
    }
    var ready = false;
    var pending = false;
    form.addEventListener(
      "submit",
      function (event) {
        if (ready) {
          ready = false;
          return;
        }
        event.preventDefault();
        event.stopImmediatePropagation();
        if (pending) {
          return; // a second click while the check runs: one submission
        }
        pending = true;
        var submitter = event.submitter || null;
        self.root.setAttribute("data-submitting", "true");
        Promise.all(
          tasks.map(function (task) {
            return task();
          })
        ).then(function () {
          ready = true;
          pending = false;
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
