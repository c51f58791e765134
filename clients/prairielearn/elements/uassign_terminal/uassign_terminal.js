/*
 * <uassign_terminal>: a terminal from a ua server, in the browser.
 *
 * For each element on the page (a .uassign-terminal div with data-spec,
 * data-http-base and data-ws-base, rendered by uassign_terminal.py):
 *   1. POST the sealed spec to {http-base}/spec  ->  {"instanceID": "..."}
 *      (with ?route={data-route} when server.py passed the spec's route
 *      token, so HAProxy in front of several ua nodes picks the spec's node)
 *   2. open {ws-base}/instance/{instanceID}/ws and speak terminado with
 *      xterm.js: ["stdin", data] from the keyboard, ["set_size", rows, cols]
 *      on fit and resize, ["stdout", text] written to the screen.
 *   3. on close, say why and offer what to do next; reconnect by itself after
 *      a network drop or a server restart (the server keeps the program
 *      running for its reattach grace, 60 s by default, and replays the
 *      recent output on reconnect).
 *
 * In read-only mode (data-mode="observe": staff views, closed assessments)
 * it never takes the terminal: it asks POST {http-base}/spec?mode=observe for
 * the instance and opens its websocket with ?mode=observe (output only).
 *
 * With graded files (data-graded-files), a submission of the question's form
 * first fetches {http-base}/instance/{id}/files?path=... into a hidden field,
 * which the controller's parse() turns into submitted_answers["_files"].
 *
 * Each element is mounted by the inline script rendered with it (keyed by its
 * uuid), so elements inserted after the page loaded start too.
 *
 * Needs window.Terminal and window.FitAddon (vendor/xterm-bundle.js).
 */
(function () {
  "use strict";

  if (window.UassignTerminal) {
    return;
  }

  var CLOSE_EXITED = 1000;
  var CLOSE_GOING_AWAY = 1001;
  var CLOSE_TAKEN_OVER = 4001;
  var CLOSE_IDLE = 4002;
  var CLOSE_GONE = 4003;
  var CLOSE_NOT_RUNNING = 4004;
  var RESET_CONFIRM =
    "Reset to a fresh copy? Everything in this terminal's environment is lost: " +
    "your files, your command history and any running programs. " +
    "You get the environment as it was first given to you. This cannot be undone.";

  // Automatic retries: quick at first (a reload or a blip lands back in the
  // same program within the server's grace period), then every 15 s.
  var RETRY_DELAYS_MS = [250, 1000, 2000, 3000, 5000, 8000, 12000, 15000];
  var GIVE_UP_AFTER_MS = 10 * 60 * 1000;
  var MIN_503_DELAY_MS = 2000;
  var MAX_HANDSHAKE_FAILURES = 4;

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function retryAfterMs(response, body) {
    // Retry-After is readable only if the server exposes it to CORS; a JSON
    // retryAfter field is read too when the server sends one.
    var header = response.headers.get("Retry-After");
    var seconds = header !== null ? Number(header) : NaN;
    if (isNaN(seconds) && body && typeof body.retryAfter === "number") {
      seconds = body.retryAfter;
    }
    return isNaN(seconds) ? null : Math.max(MIN_503_DELAY_MS, seconds * 1000);
  }

  function Session(root) {
    this.root = root;
    this.spec = root.getAttribute("data-spec");
    this.route = root.getAttribute("data-route") || "";
    this.httpBase = root.getAttribute("data-http-base");
    this.wsBase = root.getAttribute("data-ws-base");
    this.overlay = root.querySelector(".uassign-terminal-overlay");
    this.messageEl = root.querySelector(".uassign-terminal-message");
    this.detailEl = root.querySelector(".uassign-terminal-detail");
    this.button = root.querySelector(".uassign-terminal-action");
    this.cancelButton = root.querySelector(".uassign-terminal-cancel");
    this.observing = root.getAttribute("data-mode") === "observe";
    this.gradedFiles = parseJson(root.getAttribute("data-graded-files") || "[]") || [];
    this.wrapper = root.parentNode;

    this.ws = null;
    this.state = "idle"; // idle | posting | connecting | open | waiting | stopped
    this.generation = 0; // stale fetches and sockets check this
    this.attempt = 0;
    this.failingSince = null;
    this.handshakeFailures = 0;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.buttonAction = null;
    this.leaving = false;
    this.instanceID = null;
    this.wantFocus = false;

    this.term = new window.Terminal({
      cursorBlink: true,
      fontFamily: 'Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: 14,
      scrollback: 5000,
      disableStdin: this.observing,
    });
    this.fitAddon = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fitAddon);
    this.term.open(root.querySelector(".uassign-terminal-screen"));

    var self = this;
    this.term.onData(function (data) {
      if (!self.observing) {
        self.send(["stdin", data]);
      }
    });
    this.term.onResize(function (size) {
      if (!self.observing) {
        self.send(["set_size", size.rows, size.cols]);
      }
    });
    if (this.cancelButton) {
      this.cancelButton.addEventListener("click", function () {
        var action = self.cancelAction;
        if (action) {
          action();
        }
      });
    }
    var resetButton = this.wrapper && this.wrapper.querySelector(".uassign-terminal-reset");
    if (resetButton && !this.observing) {
      resetButton.addEventListener("click", function () {
        self.confirmReset();
      });
    }
    if (!this.observing && this.gradedFiles.length > 0) {
      this.hookSubmission();
    }
    this.button.addEventListener("click", function () {
      var action = self.buttonAction;
      self.wantFocus = true;
      if (action) {
        action();
      }
    });
    if (window.ResizeObserver) {
      var pending = false;
      new ResizeObserver(function () {
        if (!pending) {
          pending = true;
          window.requestAnimationFrame(function () {
            pending = false;
            self.fit();
          });
        }
      }).observe(root);
    } else {
      window.addEventListener("resize", function () {
        self.fit();
      });
    }
    window.addEventListener("online", function () {
      // Back from offline: a waiting retry goes now; an open socket may be a
      // dead TCP connection, so take over with a fresh one.
      if (self.state === "waiting" || self.state === "open") {
        self.connect("reconnect");
      }
    });
    window.addEventListener("pagehide", function () {
      self.leaving = true;
    });
    window.addEventListener("pageshow", function (event) {
      self.leaving = false;
      if (event.persisted && self.state !== "open") {
        self.connect("reconnect"); // back from the back-forward cache
      }
    });

    this.fit();
    this.connect("start");
  }

  // {http-base}{path}, with the route token for a load balancer.
  Session.prototype.specUrl = function (path) {
    if (!this.route) {
      return this.httpBase + path;
    }
    return this.httpBase + path + (path.indexOf("?") < 0 ? "?" : "&") + "route=" + encodeURIComponent(this.route);
  };

  Session.prototype.fit = function () {
    try {
      this.fitAddon.fit();
    } catch (e) {
      // Not laid out yet (hidden): the next resize fits.
    }
  };

  Session.prototype.send = function (message) {
    if (this.ws && this.state === "open" && this.ws.readyState === WebSocket.OPEN) {
      this.ws.send(JSON.stringify(message));
    }
  };

  Session.prototype.clearTimers = function () {
    window.clearTimeout(this.retryTimer);
    window.clearInterval(this.countdownTimer);
    this.retryTimer = null;
    this.countdownTimer = null;
  };

  Session.prototype.show = function (message, detail, buttonLabel, buttonAction) {
    this.overlay.hidden = false;
    if (this.cancelButton) {
      this.cancelButton.hidden = true;
    }
    this.cancelAction = null;
    this.root.setAttribute("data-state", this.state);
    this.messageEl.textContent = message;
    this.detailEl.textContent = detail || "";
    this.detailEl.hidden = !detail;
    this.button.textContent = buttonLabel || "";
    this.button.hidden = !buttonLabel;
    this.buttonAction = buttonAction || null;
  };

  Session.prototype.hide = function () {
    this.overlay.hidden = true;
    this.root.setAttribute("data-state", this.state);
  };

  // Stops automatic reconnection and offers one action.
  Session.prototype.stop = function (message, detail, buttonLabel, reason) {
    var self = this;
    this.clearTimers();
    this.generation += 1;
    this.state = "stopped";
    this.root.setAttribute("data-close-reason", reason || "");
    this.show(message, detail, buttonLabel, function () {
      self.connect("manual");
    });
  };

  // Asks before resetting: the overlay names what is lost, with Reset and Cancel.
  Session.prototype.confirmReset = function () {
    var self = this;
    var before = {
      overlay: !this.overlay.hidden,
      message: this.messageEl.textContent,
      detail: this.detailEl.textContent,
      button: this.button.hidden ? null : this.button.textContent,
      action: this.buttonAction,
    };
    this.show("Reset to a fresh copy?", RESET_CONFIRM, "Reset", function () {
      self.reset();
    });
    this.root.setAttribute("data-confirm", "reset");
    this.cancelButton.hidden = false;
    this.cancelAction = function () {
      self.root.removeAttribute("data-confirm");
      if (before.overlay) {
        self.show(before.message, before.detail, before.button, before.action);
      } else {
        self.hide();
        self.term.focus();
      }
    };
  };

  // Cleans the spec (its instance is removed) and starts a fresh one.
  Session.prototype.reset = function () {
    var self = this;
    this.root.removeAttribute("data-confirm");
    this.clearTimers();
    this.generation += 1;
    var generation = this.generation;
    if (this.ws) {
      var old = this.ws;
      this.ws = null;
      try {
        old.close(1000);
      } catch (e) {
        // already closing
      }
    }
    this.state = "posting";
    this.show("Resetting to a fresh copy…", "");
    fetch(this.specUrl("/spec/clean?async=false"), {
      method: "POST",
      body: this.spec,
      headers: { "Content-Type": "text/plain" },
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
    }).then(
      function (response) {
        if (generation !== self.generation) {
          return;
        }
        if (response.ok) {
          self.term.reset();
          self.connect("manual");
        } else {
          self.stop("The terminal could not be reset.", "HTTP " + response.status, "Try again", "reset-failed");
        }
      },
      function () {
        if (generation === self.generation) {
          self.stop("The terminal could not be reset.", "Cannot reach the terminal server.", "Try again", "reset-failed");
        }
      }
    );
  };

  // The instance ID: the one in use, else the spec's current one (never
  // taking the terminal over).
  Session.prototype.findInstance = function () {
    if (this.instanceID) {
      return Promise.resolve(this.instanceID);
    }
    return fetch(this.specUrl("/spec?mode=observe"), {
      method: "POST",
      body: this.spec,
      headers: { "Content-Type": "text/plain" },
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
    }).then(function (response) {
      return response.json().then(function (body) {
        if (response.ok && body && typeof body.instanceID === "string") {
          return body.instanceID;
        }
        throw new Error((body && body.error) || "HTTP " + response.status);
      });
    });
  };

  // The graded files as the controller's parse() reads them:
  // {"files": [{"name", "contents"}], "missing": [...]} or {"error": "..."}.
  Session.prototype.collectFiles = function () {
    var self = this;
    return this.findInstance()
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
  };

  // Holds the question form's submission until the graded files are in
  // its hidden field, then submits with the same button.
  Session.prototype.hookSubmission = function () {
    var self = this;
    var field = this.wrapper && this.wrapper.querySelector("input.uassign-terminal-files");
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
        self.collectFiles().then(function (json) {
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
  };

  // Closes any socket and asks the server for the instance again (POST
  // /spec also takes the terminal over from any other tab or window).
  Session.prototype.connect = function (why) {
    var self = this;
    this.clearTimers();
    this.generation += 1;
    var generation = this.generation;
    if (this.ws) {
      var old = this.ws;
      this.ws = null;
      try {
        old.close(1000);
      } catch (e) {
        // already closing
      }
    }
    if (why === "manual" || why === "start") {
      this.attempt = 0;
      this.failingSince = null;
      this.handshakeFailures = 0;
    }
    this.state = "posting";
    this.root.removeAttribute("data-close-reason");
    if (this.observing) {
      this.show("Looking for the student's terminal…");
    } else if (why === "start" || why === "manual") {
      this.show(
        "Starting your terminal…",
        why === "start" ? "The first start can take a minute while its environment is prepared." : ""
      );
    } else {
      this.show("Reconnecting…");
    }
    fetch(this.specUrl(this.observing ? "/spec?mode=observe" : "/spec"), {
      method: "POST",
      body: this.spec,
      headers: { "Content-Type": "text/plain" },
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
    })
      .then(function (response) {
        return response.text().then(function (text) {
          return { response: response, body: parseJson(text) };
        });
      })
      .then(
        function (answer) {
          if (generation !== self.generation) {
            return;
          }
          self.onSpecAnswer(answer.response, answer.body, generation);
        },
        function () {
          if (generation !== self.generation) {
            return;
          }
          self.retry("Cannot reach the terminal server.");
        }
      );
  };

  Session.prototype.onSpecAnswer = function (response, body, generation) {
    var error = body && typeof body.error === "string" ? body.error : null;
    if (response.ok && body && typeof body.instanceID === "string") {
      this.instanceID = body.instanceID;
      this.openSocket(body.instanceID, generation);
    } else if (this.observing && response.status === 404 && error) {
      this.notRunning();
    } else if (response.status === 503) {
      // ua's own 503 says why (at capacity, Docker away); a load balancer's
      // without a ua error body means no node can take the request now.
      this.retry(error || "The server is unavailable, retrying…", retryAfterMs(response, body));
    } else if (response.status >= 500 && !error) {
      // A proxy in front of ua (502, 504): the server is restarting or away.
      this.retry("The terminal server is not answering (HTTP " + response.status + ").");
    } else {
      // 400 forged/wrong key, 404 no such assignment, 410 expired, 413, 422 build failed.
      var heading = {
        400: "This question's terminal could not be opened.",
        404: "This question's terminal environment does not exist on the server.",
        410: "This question's terminal has expired.",
        413: "This question's terminal could not be opened.",
        422: "This question's terminal environment could not be built.",
      }[response.status] || "This question's terminal could not be opened.";
      this.stop(
        heading,
        (error || "HTTP " + response.status) + (response.status === 410 ? "\nReload the page or ask your instructor." : ""),
        "Try again",
        "http-" + response.status
      );
    }
  };

  Session.prototype.openSocket = function (instanceID, generation) {
    var self = this;
    var ws;
    try {
      ws = new WebSocket(
        this.wsBase + "/instance/" + encodeURIComponent(instanceID) + "/ws" + (this.observing ? "?mode=observe" : "")
      );
    } catch (e) {
      this.stop("The terminal address is not valid.", String(e), "Try again", "bad-url");
      return;
    }
    this.ws = ws;
    this.state = "connecting";
    var gotSetup = false;
    var exited = false;
    ws.onmessage = function (event) {
      if (self.ws !== ws || typeof event.data !== "string") {
        return;
      }
      var message = parseJson(event.data);
      if (!Array.isArray(message)) {
        return;
      }
      if (message[0] === "setup") {
        gotSetup = true;
        self.state = "open";
        self.attempt = 0;
        self.failingSince = null;
        self.handshakeFailures = 0;
        // The server replays the recent output on every attach: start clean.
        self.term.reset();
        self.hide();
        self.fit();
        if (!self.observing) {
          self.send(["set_size", self.term.rows, self.term.cols]);
        }
        // Focus after a click on the overlay's button, or if it had focus;
        // never on page load (it would scroll the question away).
        if (self.wantFocus || self.root.contains(document.activeElement)) {
          self.term.focus();
        }
        self.wantFocus = false;
      } else if (message[0] === "stdout" && typeof message[1] === "string") {
        self.term.write(message[1]);
      } else if (message[0] === "disconnect") {
        exited = true;
      }
    };
    ws.onclose = function (event) {
      if (self.ws !== ws || generation !== self.generation) {
        return;
      }
      self.ws = null;
      self.onSocketClosed(event.code, gotSetup, exited);
    };
  };

  Session.prototype.onSocketClosed = function (code, gotSetup, exited) {
    this.state = "idle";
    if (this.leaving) {
      return;
    }
    if (this.observing && (code === CLOSE_NOT_RUNNING || code === CLOSE_GONE || exited || code === CLOSE_EXITED)) {
      this.instanceID = null;
      this.notRunning();
    } else if (exited || code === CLOSE_EXITED) {
      this.stop("The program in this terminal has ended.", "", "Restart", "exited");
    } else if (code === CLOSE_TAKEN_OVER) {
      this.stop("This terminal was opened in another tab or window.", "", "Use it here", "taken-over");
    } else if (code === CLOSE_IDLE) {
      this.stop("This terminal was closed after a long time without activity.", "", "Reconnect", "idle");
    } else if (code === CLOSE_GONE) {
      this.stop(
        "This terminal was reset or has expired.",
        "Starting again gives you a fresh environment.",
        "Start again",
        "gone"
      );
    } else if (code === CLOSE_GOING_AWAY) {
      this.retry("The terminal server is restarting.");
    } else if (!gotSetup) {
      // The upgrade failed (instance just removed: 404; site not allowed: 403;
      // or the network). The browser does not say which.
      this.handshakeFailures += 1;
      if (this.handshakeFailures >= MAX_HANDSHAKE_FAILURES) {
        this.stop(
          "The terminal server refused the connection.",
          "If this keeps happening, the ua server may not allow this site (its --allowed-origins).",
          "Try again",
          "refused"
        );
      } else {
        this.retry("Could not connect to the terminal.");
      }
    } else {
      this.retry("The connection to the terminal was lost.");
    }
  };

  // Read-only view: the student's terminal is not running (or gone).
  Session.prototype.notRunning = function () {
    this.stop(
      "The student's terminal is not running.",
      this.gradedFiles.length > 0 ? "The files of the last submission are shown below, if there was one." : "",
      "Look again",
      "not-running"
    );
  };

  // Waits, then connects again; gives up after GIVE_UP_AFTER_MS of failures.
  Session.prototype.retry = function (message, delayMs) {
    var self = this;
    this.clearTimers();
    var now = Date.now();
    if (this.failingSince === null) {
      this.failingSince = now;
    }
    if (now - this.failingSince > GIVE_UP_AFTER_MS) {
      this.stop(message, "Stopped trying to reconnect.", "Reconnect", "gave-up");
      return;
    }
    if (delayMs === null || delayMs === undefined) {
      var base = RETRY_DELAYS_MS[Math.min(this.attempt, RETRY_DELAYS_MS.length - 1)];
      delayMs = base * (0.8 + 0.4 * Math.random());
    }
    this.attempt += 1;
    this.state = "waiting";
    var due = now + delayMs;
    var generation = this.generation;
    var tick = function () {
      var seconds = Math.max(0, Math.ceil((due - Date.now()) / 1000));
      self.show(message, "Reconnecting in " + seconds + " s…", "Reconnect now", function () {
        self.connect("reconnect");
      });
    };
    tick();
    this.countdownTimer = window.setInterval(tick, 1000);
    this.retryTimer = window.setTimeout(function () {
      if (generation === self.generation) {
        self.connect("reconnect");
      }
    }, delayMs);
  };

  function mount(root) {
    if (!root || root.uassignTerminal) {
      return root ? root.uassignTerminal : null;
    }
    if (typeof window.Terminal !== "function" || !window.FitAddon) {
      var message = root.querySelector(".uassign-terminal-message");
      if (message) {
        message.textContent = "The terminal could not load (xterm.js is missing).";
      }
      return null;
    }
    root.uassignTerminal = new Session(root);
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

  window.UassignTerminal = { mount: mount, mountAll: mountAll, Session: Session };

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", mountAll);
  } else {
    mountAll();
  }
})();
