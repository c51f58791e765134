/*
 * UaCheck: the "Check my work" button and its feedback (docs/API.md,
 * "Checks"), shared by ua's own pages (/instance/{id}, /start) and the
 * PrairieLearn element <uassign_terminal>.
 *
 *   var panel = new UaCheck.Panel(options)
 *
 * options:
 *   httpBase       the server ("" for the same origin)
 *   instanceID()   a Promise of the instance's ID
 *   button         an existing button to use (else panel.button is made)
 *   region         an existing element for the feedback (else panel.region is made)
 *   available      show the button from the start (else setAvailable(true))
 *   root           the terminal's root: its "ua-terminal-reset" (a reset to a
 *                  fresh copy) clears the feedback, which was of the old work
 *   onLayout()     called when the feedback appears, changes or is hidden
 *                  (ua's pages refit the terminal above it)
 *
 * panel.run() posts {httpBase}/instance/{id}/check, shows the busy state,
 * then the score, each test (✓/✗ name: message) and the check's output,
 * always as text (textContent, never HTML); errors (404, 409, 422, 429,
 * 503) are said in words, with a countdown when the server gives
 * retryAfter. It resolves to {ok, status, body, retryAfter} so that a
 * caller (the element at submission) can use the sealed result. A short
 * summary goes to a polite live region; the details are not read out.
 */
(function () {
  "use strict";

  if (window.UaCheck) {
    return;
  }

  var HEADINGS = {
    404: "Your work could not be checked.",
    409: "A check is already running.",
    422: "The check could not run. Tell your instructor.",
    429: "You checked a moment ago.",
    503: "The server is busy.",
  };

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) {
      node.className = className;
    }
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function retryAfter(response, body) {
    var header = response && response.headers.get("Retry-After");
    var seconds = header !== null && header !== undefined ? Number(header) : NaN;
    if (isNaN(seconds) && body && typeof body.retryAfter === "number") {
      seconds = body.retryAfter;
    }
    return isNaN(seconds) ? null : Math.max(0, Math.ceil(seconds));
  }

  function percent(score) {
    return Math.round(Math.max(0, Math.min(1, Number(score) || 0)) * 100) + "%";
  }

  function Panel(options) {
    this.options = options;
    this.httpBase = options.httpBase || "";
    this.running = null;
    this.last = null;
    this.countdown = null;
    this.button = options.button || el("button", "ua-check-button", "Check my work");
    this.button.type = "button";
    this.button.classList.add("ua-check-button");
    this.label = this.button.textContent || "Check my work";
    this.region = options.region || el("section", "");
    this.region.classList.add("ua-check");
    this.region.setAttribute("aria-label", "Check of your work");
    this.region.hidden = true;
    this.status = el("p", "ua-check-status");
    this.status.setAttribute("role", "status");
    this.status.setAttribute("aria-live", "polite");
    this.details = el("div", "ua-check-details");
    this.close = el("button", "ua-check-close", "×");
    this.close.type = "button";
    this.close.setAttribute("aria-label", "Hide the check's feedback");
    this.region.appendChild(this.close);
    this.region.appendChild(this.status);
    this.region.appendChild(this.details);
    var self = this;
    this.close.addEventListener("click", function () {
      self.region.hidden = true;
      self.layout();
      self.button.focus();
    });
    this.button.addEventListener("click", function () {
      if (self.button.getAttribute("aria-disabled") !== "true") {
        self.run();
      }
    });
    this.setAvailable(!!options.available);
    if (options.root) {
      options.root.addEventListener("ua-terminal-reset", function () {
        self.clear();
      });
    }
  }

  // Hides the feedback; a check still running shows its answer when it comes.
  Panel.prototype.clear = function () {
    if (this.running) {
      return;
    }
    this.region.hidden = true;
    this.region.removeAttribute("data-state");
    this.status.textContent = "";
    this.details.textContent = "";
    this.layout();
  };

  Panel.prototype.layout = function () {
    if (this.options.onLayout) {
      this.options.onLayout();
    }
  };

  // aria-disabled, not disabled: a disabled button would drop the keyboard
  // focus while the check runs.
  Panel.prototype.setEnabled = function (on) {
    this.button.setAttribute("aria-disabled", on ? "false" : "true");
  };

  Panel.prototype.setAvailable = function (on) {
    this.available = on;
    this.button.hidden = !on;
  };

  // Runs a check (or joins the one running from this page).
  Panel.prototype.run = function () {
    if (this.running) {
      return this.running;
    }
    var self = this;
    this.busy(true);
    this.running = this.options
      .instanceID()
      .then(function (id) {
        return fetch(self.httpBase + "/instance/" + encodeURIComponent(id) + "/check", {
          method: "POST",
          mode: "cors",
          credentials: "omit",
          cache: "no-store",
        });
      })
      .then(function (response) {
        return response.text().then(function (text) {
          return { response: response, body: parseJson(text) };
        });
      })
      .then(
        function (got) {
          return self.answer(got.response, got.body);
        },
        function (e) {
          var said = e instanceof TypeError ? "The server could not be reached." : String((e && e.message) || e);
          return self.failed(0, null, said, null);
        }
      )
      .then(function (outcome) {
        self.running = null;
        self.busy(false, outcome.retryAfter);
        self.layout();
        return outcome;
      });
    return this.running;
  };

  Panel.prototype.answer = function (response, body) {
    var good = response.ok && body && typeof body.result === "string" && typeof body.score === "number";
    if (good) {
      this.last = body;
      this.showResult(body);
      return { ok: true, status: response.status, body: body, retryAfter: null };
    }
    var error = body && typeof body.error === "string" ? body.error : "HTTP " + response.status + ".";
    var wait = response.status === 429 || response.status === 503 ? retryAfter(response, body) : null;
    return this.failed(response.status, body, error, wait);
  };

  Panel.prototype.busy = function (on, wait) {
    var self = this;
    window.clearInterval(this.countdown);
    this.countdown = null;
    this.setEnabled(!on);
    this.button.setAttribute("aria-busy", on ? "true" : "false");
    this.region.setAttribute("aria-busy", on ? "true" : "false");
    if (on) {
      this.button.textContent = "Checking…";
      this.region.hidden = false;
      this.region.setAttribute("data-state", "busy");
      this.status.textContent = "Checking your work…";
      this.details.textContent = "";
      this.layout();
      return;
    }
    this.button.textContent = this.label;
    if (wait) {
      // The server would refuse before then (429): count down on the button.
      var due = Date.now() + wait * 1000;
      var tick = function () {
        var left = Math.ceil((due - Date.now()) / 1000);
        if (left <= 0) {
          window.clearInterval(self.countdown);
          self.countdown = null;
          self.setEnabled(true);
          self.button.textContent = self.label;
        } else {
          self.setEnabled(false);
          self.button.textContent = "Check again in " + left + " s";
        }
      };
      tick();
      this.countdown = window.setInterval(tick, 500);
    }
  };

  Panel.prototype.showResult = function (body) {
    var tests = Array.isArray(body.tests) ? body.tests : [];
    var passed = tests.filter(function (t) {
      return t && t.passed === true;
    }).length;
    this.region.setAttribute("data-state", body.score >= 1 ? "passed" : "done");
    this.status.textContent =
      "Score: " + percent(body.score) + (tests.length ? " — " + passed + " of " + tests.length + " tests passed." : ".");
    this.details.textContent = "";
    if (tests.length) {
      var list = el("ul", "ua-check-tests");
      tests.forEach(function (t) {
        var ok = !!(t && t.passed === true);
        var item = el("li", ok ? "ua-check-pass" : "ua-check-fail");
        var mark = el("span", "ua-check-mark", ok ? "✓" : "✗");
        mark.setAttribute("aria-hidden", "true");
        item.appendChild(mark);
        item.appendChild(el("span", "ua-check-hidden", ok ? "Passed: " : "Failed: "));
        item.appendChild(el("span", "ua-check-name", String((t && t.name) || "")));
        if (t && typeof t.message === "string" && t.message) {
          item.appendChild(el("span", "ua-check-message", ": " + t.message));
        }
        list.appendChild(item);
      });
      this.details.appendChild(list);
    }
    if (typeof body.output === "string" && body.output) {
      var box = el("details", "ua-check-output");
      box.open = tests.length === 0;
      box.appendChild(el("summary", "", "Output of the check"));
      box.appendChild(el("pre", "", body.output));
      this.details.appendChild(box);
    }
  };

  // An error in words: the server's sentence under a heading; a 422 shows
  // only its error, never its sealedOutput (that is for the author).
  Panel.prototype.failed = function (status, body, error, wait) {
    this.region.hidden = false;
    this.region.setAttribute("data-state", "error");
    this.status.textContent = HEADINGS[status] || "Your work could not be checked.";
    this.details.textContent = "";
    this.details.appendChild(el("p", "ua-check-error", error));
    return { ok: false, status: status, body: body ? { error: error } : null, error: error, retryAfter: wait };
  };

  window.UaCheck = { Panel: Panel };
})();
