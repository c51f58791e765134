/*
 * UaTerminal: the one browser terminal of ua, used by the page at
 * /instance/{id}, the start page /start#<sealed spec> and the PrairieLearn
 * element <uassign_terminal> (which wraps its panels, graded files and
 * MathJax around it). Needs window.Terminal and window.FitAddon (xterm.js).
 *
 *   new UaTerminal.Session(root, options)
 *
 * root holds the parts, found by class: .ua-screen (xterm), .ua-overlay
 * (role=status, the messages), .ua-message, .ua-detail, .ua-action,
 * .ua-cancel; the session adds the settings toolbar, the phone key row and
 * the notice line. options:
 *   spec, route      a sealed spec (POST {httpBase}/spec?progress) ...
 *   instanceID       ... or a known instance (the /instance/{id} page)
 *   httpBase, wsBase the server ("" and ws(s)://host for the same origin)
 *   observing        read-only view (?mode=observe)
 *   screenReader     turn xterm.js's screen-reader mode on (else stored choice)
 *   onAnswer(body)   the final answer of POST /spec (the page sets its title)
 *   terminal         the terminal's name (?terminal=NAME); else "main"
 *   shared           another Session whose toolbar, key row, notice and
 *                    settings this one uses (a tab of UaTabs, ua-tabs.js)
 *
 * Without `shared`, and with window.UaTabs loaded, the session shows the
 * instance's terminals as tabs (this.tabs; it is the tab "main").
 *
 * After a reset to a fresh copy, root gets a "ua-terminal-reset" event
 * (UaCheck and UaFiles clear what they showed of the old environment).
 *
 * Behaviour (docs/API.md, "Terminal websocket", "Progress", "Close codes"):
 * progress of a first start, closes said in words with what to do, reconnect
 * with a countdown, idle warning, Ctrl+Shift+C/V and Cmd+C/V, copy on
 * select, pastes sent in pieces under the 1 MiB frame limit, a key row on
 * narrow screens, screen-reader mode, font size and high contrast stored
 * per browser (localStorage).
 */
(function () {
  "use strict";

  if (window.UaTerminal) {
    return;
  }

  var CLOSE_EXITED = 1000;
  var CLOSE_GOING_AWAY = 1001;
  var CLOSE_TOO_BIG = 1009;
  var CLOSE_TAKEN_OVER = 4001;
  var CLOSE_IDLE = 4002;
  var CLOSE_GONE = 4003;
  var CLOSE_NOT_RUNNING = 4004;
  // A stdin message stays far under the server's 1 MiB frame limit even
  // when every character is escaped in JSON (\u001b: 6 bytes).
  var PASTE_PIECE = 65536;
  var NARROW_PX = 700;
  var SETTINGS_KEY = "ua-terminal-settings";
  var RESET_CONFIRM =
    "Reset to a fresh copy? Everything in this terminal's environment is lost: " +
    "your files, your command history and any running programs. " +
    "You get the environment as it was first given to you. This cannot be undone.";
  var RETRY_DELAYS_MS = [250, 1000, 2000, 3000, 5000, 8000, 12000, 15000];
  var GIVE_UP_AFTER_MS = 10 * 60 * 1000;
  var MIN_503_DELAY_MS = 2000;
  var MAX_HANDSHAKE_FAILURES = 4;
  var IS_MAC = /Mac|iPhone|iPad/.test(navigator.platform || navigator.userAgent);
  var HIGH_CONTRAST = {
    background: "#000000",
    foreground: "#ffffff",
    cursor: "#ffff00",
    cursorAccent: "#000000",
    selectionBackground: "#ffff00",
    selectionForeground: "#000000",
  };
  var PHASES = {
    queued: "Waiting for a free place on the server…",
    pulling: "Downloading the base image…",
    building: "Building your environment…",
    creating: "Creating your environment…",
    copying: "Copying your files in…",
    setup: "Running the assignment's setup…",
    starting: "Starting your terminal…",
  };

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  // A phase of POST /spec?progress in words.
  function phaseText(body) {
    var text = PHASES[body && body.phase] || "Preparing your terminal…";
    if (body && body.phase === "building" && body.step && body.steps) {
      text = "Building your environment: step " + body.step + " of " + body.steps + "…";
    }
    return text;
  }

  // Input in pieces of at most PASTE_PIECE characters, never splitting a
  // surrogate pair.
  function pieces(data) {
    var out = [];
    var i = 0;
    while (i < data.length) {
      var end = Math.min(i + PASTE_PIECE, data.length);
      var last = data.charCodeAt(end - 1);
      if (end < data.length && last >= 0xd800 && last <= 0xdbff) {
        end -= 1;
      }
      out.push(data.slice(i, end));
      i = end;
    }
    return out;
  }

  function loadSettings() {
    var stored = null;
    try {
      stored = parseJson(window.localStorage.getItem(SETTINGS_KEY) || "null");
    } catch (e) {
      stored = null; // storage off (private mode, sandboxed frame)
    }
    var s = stored && typeof stored === "object" ? stored : {};
    return {
      fontSize: typeof s.fontSize === "number" ? Math.min(32, Math.max(8, s.fontSize)) : 14,
      contrast: s.contrast === true,
      screenReader: s.screenReader === true,
      copyOnSelect: s.copyOnSelect === true,
    };
  }

  function saveSettings(settings) {
    try {
      window.localStorage.setItem(SETTINGS_KEY, JSON.stringify(settings));
    } catch (e) {
      // not kept: the setting lasts for this page only
    }
  }

  function retryAfterMs(response, body) {
    var header = response.headers.get("Retry-After");
    var seconds = header !== null ? Number(header) : NaN;
    if (isNaN(seconds) && body && typeof body.retryAfter === "number") {
      seconds = body.retryAfter;
    }
    return isNaN(seconds) ? null : Math.max(MIN_503_DELAY_MS, seconds * 1000);
  }

  function el(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  function part(root, name) {
    return root.querySelector(".ua-" + name);
  }

  function Session(root, options) {
    this.root = root;
    this.options = options;
    this.spec = options.spec || null;
    this.route = options.route || "";
    this.httpBase = options.httpBase || "";
    this.wsBase = options.wsBase;
    this.observing = !!options.observing;
    this.instanceID = options.instanceID || null;
    this.overlay = part(root, "overlay");
    this.messageEl = part(root, "message");
    this.detailEl = part(root, "detail");
    this.button = part(root, "action");
    this.cancelButton = part(root, "cancel");
    this.ws = null;
    this.state = "idle"; // idle | posting | connecting | open | waiting | stopped
    this.generation = 0;
    this.attempt = 0;
    this.failingSince = null;
    this.handshakeFailures = 0;
    this.retryTimer = null;
    this.countdownTimer = null;
    this.buttonAction = null;
    this.cancelAction = null;
    this.leaving = false;
    this.wantFocus = false;
    this.sticky = { ctrl: false, alt: false };
    this.terminal = options.terminal || "main";
    this.settings = options.shared ? options.shared.settings : loadSettings();
    if (options.screenReader) {
      this.settings.screenReader = true;
    }
    this.makeTerminal();
    if (options.shared) {
      this.shareControls(options.shared);
    } else {
      this.makeControls();
    }
    this.listen();
    this.fit();
    if (!options.shared && window.UaTabs) {
      this.tabs = new window.UaTabs.Tabs(this);
    }
    this.connect("start");
  }

  // A tab's session uses the first session's toolbar, key row and notice.
  Session.prototype.shareControls = function (other) {
    this.toolbar = other.toolbar;
    this.notice = other.notice;
    this.live = other.live;
    this.keyRow = other.keyRow;
  };

  // The session the key row types into: the shown tab's.
  Session.prototype.keyTarget = function () {
    return (this.tabs && this.tabs.shown()) || this;
  };

  // The shared settings again (a tab's session, after a change in the toolbar).
  Session.prototype.applySettings = function () {
    this.term.options.fontSize = this.settings.fontSize;
    this.term.options.screenReaderMode = this.settings.screenReader;
    this.term.options.theme = this.settings.contrast ? HIGH_CONTRAST : {};
    this.fit();
  };

  // A closed tab's session: no more connections.
  Session.prototype.dispose = function () {
    this.disposed = true;
    this.leaving = true;
    this.closeSocket();
    this.state = "stopped";
    this.term.dispose();
  };

  Session.prototype.hook = function (name) {
    if (this[name]) {
      this[name]();
    }
  };

  Session.prototype.makeTerminal = function () {
    var self = this;
    this.term = new window.Terminal({
      cursorBlink: true,
      fontFamily: 'Menlo, Consolas, "DejaVu Sans Mono", "Liberation Mono", monospace',
      fontSize: this.settings.fontSize,
      scrollback: 5000,
      disableStdin: this.observing,
      screenReaderMode: this.settings.screenReader,
      theme: this.settings.contrast ? HIGH_CONTRAST : {},
      macOptionIsMeta: true,
    });
    this.fitAddon = new window.FitAddon.FitAddon();
    this.term.loadAddon(this.fitAddon);
    this.term.open(part(this.root, "screen"));
    this.term.attachCustomKeyEventHandler(function (event) {
      return self.onKey(event);
    });
    this.term.onData(function (data) {
      self.input(data);
    });
    this.term.onResize(function (size) {
      if (!self.observing) {
        self.send(["set_size", size.rows, size.cols]);
      }
    });
    this.term.onSelectionChange(function () {
      if (self.settings.copyOnSelect && self.term.hasSelection()) {
        self.copy();
      }
    });
    this.root.classList.toggle("ua-contrast", this.settings.contrast);
  };

  // Clipboard keys; false: xterm.js leaves the key to the browser (a paste
  // event then reaches xterm.js, which pastes, bracketed if asked).
  Session.prototype.onKey = function (event) {
    if (event.type !== "keydown") {
      return true;
    }
    var key = (event.key || "").toLowerCase();
    var shiftCtrl = event.ctrlKey && event.shiftKey && !event.altKey && !event.metaKey;
    var cmd = IS_MAC && event.metaKey && !event.ctrlKey && !event.altKey;
    if ((shiftCtrl || cmd) && key === "c") {
      if (shiftCtrl) {
        event.preventDefault(); // Chromium's Ctrl+Shift+C opens the inspector
        this.copy();
      }
      return false;
    }
    if ((shiftCtrl || cmd) && key === "v") {
      return false; // the browser's paste (plain text for Ctrl+Shift+V)
    }
    if (event.altKey && event.key === "F10") {
      event.preventDefault();
      var first = this.toolbar.querySelector("button");
      if (first) {
        first.focus();
      }
      return false;
    }
    if (this.notice && !this.notice.hidden) {
      this.notice.hidden = true; // any key: the server hears it and stays
    }
    return true;
  };

  Session.prototype.copy = function () {
    var text = this.term.getSelection();
    if (!text || !navigator.clipboard) {
      return;
    }
    var self = this;
    navigator.clipboard.writeText(text).then(
      function () {
        self.announce("Copied.");
      },
      function () {
        self.announce("The browser did not allow copying; use the menu of a right click.");
      }
    );
  };

  // Keyboard (and key row) input: sticky Ctrl/Alt apply to the next key;
  // a large paste goes in pieces.
  Session.prototype.input = function (data) {
    if (this.observing) {
      return;
    }
    if (this.sticky.ctrl && data.length === 1) {
      var code = data.toUpperCase().charCodeAt(0);
      if (code >= 64 && code <= 95) {
        data = String.fromCharCode(code - 64);
      } else if (data === " ") {
        data = "\u0000";
      }
    }
    if (this.sticky.alt) {
      data = "\u001b" + data;
    }
    this.setSticky("ctrl", false);
    this.setSticky("alt", false);
    var self = this;
    pieces(data).forEach(function (piece) {
      self.send(["stdin", piece]);
    });
  };

  Session.prototype.setSticky = function (name, on) {
    this.sticky[name] = on;
    var button = this.keyRow.querySelector('[data-key="' + name + '"]');
    if (button) {
      button.setAttribute("aria-pressed", on ? "true" : "false");
    }
  };

  Session.prototype.makeControls = function () {
    var self = this;
    this.toolbar = el("div", "ua-toolbar");
    this.toolbar.setAttribute("role", "toolbar");
    this.toolbar.setAttribute("aria-label", "Terminal settings (Alt+F10 from the terminal)");
    var toggles = [
      ["screenReader", "Screen reader"],
      ["contrast", "High contrast"],
      ["copyOnSelect", "Copy on select"],
    ];
    var button = function (label, name, action) {
      var b = el("button", "ua-tool", label);
      b.type = "button";
      b.setAttribute("data-tool", name);
      b.addEventListener("click", action);
      self.toolbar.appendChild(b);
      return b;
    };
    button("A−", "smaller", function () {
      self.setFontSize(self.settings.fontSize - 2);
    }).setAttribute("aria-label", "Smaller text");
    button("A+", "larger", function () {
      self.setFontSize(self.settings.fontSize + 2);
    }).setAttribute("aria-label", "Larger text");
    toggles.forEach(function (t) {
      var b = button(t[1], t[0], function () {
        self.toggle(t[0]);
      });
      b.setAttribute("aria-pressed", self.settings[t[0]] ? "true" : "false");
    });
    if (this.spec && !this.observing) {
      button("When it expires", "expiry", function () {
        self.showExpiry();
      });
    }
    if (this.options.toolbarExtra) {
      this.options.toolbarExtra.forEach(function (b) {
        self.toolbar.appendChild(b);
      });
    }
    this.root.insertBefore(this.toolbar, this.root.firstChild);

    this.notice = el("div", "ua-notice");
    this.notice.setAttribute("role", "alert");
    this.notice.hidden = true;
    this.root.appendChild(this.notice);
    this.live = el("div", "ua-live");
    this.live.setAttribute("aria-live", "polite");
    this.root.appendChild(this.live);

    this.keyRow = el("div", "ua-keys");
    this.keyRow.setAttribute("role", "group");
    this.keyRow.setAttribute("aria-label", "Extra keys");
    var keys = [
      ["Esc", "\u001b", "Escape"],
      ["Tab", "\t", "Tab"],
      ["Ctrl", "ctrl", "Control (applies to the next key)"],
      ["Alt", "alt", "Alt (applies to the next key)"],
      ["←", "left", "Left"],
      ["↑", "up", "Up"],
      ["↓", "down", "Down"],
      ["→", "right", "Right"],
      ["|", "|", "Bar"],
      ["~", "~", "Tilde"],
      ["/", "/", "Slash"],
      ["-", "-", "Dash"],
    ];
    keys.forEach(function (k) {
      var b = el("button", "ua-key", k[0]);
      b.type = "button";
      b.setAttribute("data-key", k[1]);
      b.setAttribute("aria-label", k[2]);
      if (k[1] === "ctrl" || k[1] === "alt") {
        b.setAttribute("aria-pressed", "false");
      }
      // Keeps the focus (and the soft keyboard) in the terminal.
      b.addEventListener("mousedown", function (e) {
        e.preventDefault();
      });
      b.addEventListener("click", function () {
        self.keyTarget().pressKey(k[1]);
      });
      self.keyRow.appendChild(b);
    });
    this.root.appendChild(this.keyRow);
  };

  Session.prototype.pressKey = function (key) {
    if (key === "ctrl" || key === "alt") {
      this.setSticky(key, !this.sticky[key]);
    } else {
      var app = this.term.modes && this.term.modes.applicationCursorKeysMode;
      var arrows = { up: "A", down: "B", right: "C", left: "D" };
      this.input(arrows[key] ? (app ? "\u001bO" : "\u001b[") + arrows[key] : key);
    }
    this.term.focus();
  };

  // The instance's expiry, from the last answer of POST /spec?progress.
  Session.prototype.showExpiry = function () {
    var e = this.expiry;
    var text = "Not known yet: the terminal has not started.";
    if (e && typeof e.idleSeconds === "number") {
      var days = e.idleSeconds / 86400;
      var span = days >= 1 ? Math.round(days) + " day(s)" : Math.round(e.idleSeconds / 3600) + " hour(s)";
      text = "Your environment and its files are kept for " + span + " after you last leave it";
      if (typeof e.keepUntil === "number") {
        text += ", and at least until " + new Date(e.keepUntil * 1000).toLocaleString();
      }
      text += ". After that, opening it again gives you a fresh copy.";
    }
    this.notice.setAttribute("data-kind", "expiry");
    this.notice.textContent = text;
    this.notice.hidden = false;
  };

  Session.prototype.setFontSize = function (size) {
    this.settings.fontSize = Math.min(32, Math.max(8, size));
    this.term.options.fontSize = this.settings.fontSize;
    saveSettings(this.settings);
    this.fit();
    this.hook("onSettings");
    this.announce("Text size " + this.settings.fontSize + ".");
  };

  Session.prototype.toggle = function (name) {
    var on = !this.settings[name];
    this.settings[name] = on;
    saveSettings(this.settings);
    var b = this.toolbar.querySelector('[data-tool="' + name + '"]');
    b.setAttribute("aria-pressed", on ? "true" : "false");
    if (name === "screenReader") {
      this.term.options.screenReaderMode = on;
    } else if (name === "contrast") {
      this.term.options.theme = on ? HIGH_CONTRAST : {};
      this.root.classList.toggle("ua-contrast", on);
    }
    this.hook("onSettings");
    this.announce(b.textContent + (on ? " on." : " off."));
  };

  Session.prototype.announce = function (text) {
    this.live.textContent = "";
    var live = this.live;
    window.setTimeout(function () {
      live.textContent = text;
    }, 50);
  };

  Session.prototype.listen = function () {
    var self = this;
    this.button.addEventListener("click", function () {
      self.wantFocus = true;
      if (self.buttonAction) {
        self.buttonAction();
      }
    });
    if (this.cancelButton) {
      this.cancelButton.addEventListener("click", function () {
        if (self.cancelAction) {
          self.cancelAction();
        }
      });
    }
    var refit = function () {
      self.fit();
    };
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
      }).observe(this.root);
    }
    window.addEventListener("resize", refit);
    window.addEventListener("orientationchange", refit);
    if (window.visualViewport) {
      window.visualViewport.addEventListener("resize", refit); // the soft keyboard
    }
    part(this.root, "screen").addEventListener("click", function () {
      self.term.focus(); // a tap opens the soft keyboard
    });
    window.addEventListener("online", function () {
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
        self.connect("reconnect");
      }
    });
  };

  Session.prototype.specUrl = function (path) {
    if (!this.route) {
      return this.httpBase + path;
    }
    return this.httpBase + path + (path.indexOf("?") < 0 ? "?" : "&") + "route=" + encodeURIComponent(this.route);
  };

  Session.prototype.fit = function () {
    this.root.classList.toggle("ua-narrow", this.root.clientWidth > 0 && this.root.clientWidth < NARROW_PX);
    try {
      this.fitAddon.fit();
    } catch (e) {
      // not laid out yet (hidden): the next resize fits
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
  Session.prototype.stop = function (message, detail, buttonLabel, reason, action) {
    var self = this;
    this.clearTimers();
    this.generation += 1;
    this.state = "stopped";
    this.root.setAttribute("data-close-reason", reason || "");
    this.show(
      message,
      detail,
      buttonLabel,
      action ||
        function () {
          self.connect("manual");
        }
    );
    if (buttonLabel) {
      this.button.focus();
    }
  };

  Session.prototype.post = function (path) {
    return fetch(this.specUrl(path), {
      method: "POST",
      body: this.spec,
      headers: { "Content-Type": "text/plain" },
      mode: "cors",
      credentials: "omit",
      cache: "no-store",
    });
  };

  // Asks before resetting: the overlay names what is lost, with Reset and Cancel.
  Session.prototype.confirmReset = function () {
    var self = this;
    this.hook("beforeConfirm"); // the tabs show this one
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
    this.cancelButton.focus();
  };

  // Cleans the spec (its instance is removed) and starts a fresh one.
  Session.prototype.reset = function () {
    var self = this;
    this.root.removeAttribute("data-confirm");
    this.closeSocket();
    this.state = "posting";
    var generation = this.generation;
    this.show("Resetting to a fresh copy…", "");
    this.post("/spec/clean?async=false").then(
      function (response) {
        if (generation !== self.generation) {
          return;
        }
        if (response.ok) {
          self.instanceID = null;
          self.term.reset();
          // What the page showed of the old environment (a check's feedback) goes.
          self.root.dispatchEvent(new CustomEvent("ua-terminal-reset"));
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

  Session.prototype.closeSocket = function () {
    this.clearTimers();
    this.generation += 1;
    if (this.ws) {
      var old = this.ws;
      this.ws = null;
      try {
        old.close(1000);
      } catch (e) {
        // already closing
      }
    }
  };

  // The instance ID: the one in use, else the spec's current one (never
  // taking the terminal over).
  Session.prototype.findInstance = function () {
    if (this.instanceID) {
      return Promise.resolve(this.instanceID);
    }
    return this.post("/spec?mode=observe").then(function (response) {
      return response.json().then(function (body) {
        if (response.ok && body && typeof body.instanceID === "string") {
          return body.instanceID;
        }
        throw new Error((body && body.error) || "HTTP " + response.status);
      });
    });
  };

  // Asks the server for the instance (POST /spec?progress, showing the
  // phases; it also takes the terminal over from another tab), then opens
  // its websocket. Without a spec (the /instance/{id} page) it connects.
  Session.prototype.connect = function (why) {
    if (this.disposed) {
      return;
    }
    this.closeSocket();
    var generation = this.generation;
    if (why === "manual" || why === "start") {
      this.attempt = 0;
      this.failingSince = null;
      this.handshakeFailures = 0;
    }
    this.state = "posting";
    this.root.removeAttribute("data-close-reason");
    if (this.observing) {
      this.show("Looking for the terminal…");
    } else if (why === "start" || why === "manual") {
      this.show(
        "Starting your terminal…",
        why === "start" && this.spec ? "The first start can take a minute while its environment is prepared." : ""
      );
    } else {
      this.show("Reconnecting…");
    }
    if (!this.spec) {
      this.openSocket(this.instanceID, generation);
      return;
    }
    this.poll(generation);
  };

  Session.prototype.poll = function (generation) {
    var self = this;
    this.post(this.observing ? "/spec?mode=observe" : "/spec?progress")
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
          if (answer.response.status === 202) {
            self.root.setAttribute("data-phase", (answer.body && answer.body.phase) || "");
            self.show(phaseText(answer.body), "The first start can take a minute while its environment is prepared.");
            self.poll(generation);
            return;
          }
          self.onSpecAnswer(answer.response, answer.body, generation);
        },
        function () {
          if (generation === self.generation) {
            self.retry("Cannot reach the terminal server.");
          }
        }
      );
  };

  Session.prototype.onSpecAnswer = function (response, body, generation) {
    var error = body && typeof body.error === "string" ? body.error : null;
    if (response.ok && body && typeof body.instanceID === "string") {
      this.instanceID = body.instanceID;
      this.expiry = body.expiry || null;
      if (this.options.onAnswer) {
        this.options.onAnswer(body);
      }
      this.hook("onInstance");
      this.openSocket(body.instanceID, generation);
    } else if (this.observing && response.status === 404 && error) {
      this.notRunning();
    } else if (response.status === 503) {
      this.retry(error || "The server is unavailable, retrying…", retryAfterMs(response, body));
    } else if (response.status >= 500 && !error) {
      this.retry("The terminal server is not answering (HTTP " + response.status + ").");
    } else {
      var heading =
        {
          404: "This terminal's environment does not exist on the server.",
          410: "This terminal has expired.",
          422: "This terminal's environment could not be built.",
        }[response.status] || "This terminal could not be opened.";
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
      ws = new WebSocket(this.wsBase + "/instance/" + encodeURIComponent(instanceID) + "/ws" + this.wsQuery());
    } catch (e) {
      this.stop("The terminal address is not valid.", String(e), "Try again", "bad-url");
      return;
    }
    this.ws = ws;
    this.state = "connecting";
    var seen = { setup: false, exited: false };
    ws.onmessage = function (event) {
      if (self.ws === ws && typeof event.data === "string") {
        self.onMessage(parseJson(event.data), seen);
      }
    };
    ws.onclose = function (event) {
      if (self.ws !== ws || generation !== self.generation) {
        return;
      }
      self.ws = null;
      self.onSocketClosed(event.code, seen.setup, seen.exited);
    };
  };

  // ?mode=observe and ?terminal=NAME (none for "main", as before tabs).
  Session.prototype.wsQuery = function () {
    var query = [];
    if (this.observing) {
      query.push("mode=observe");
    }
    if (this.terminal !== "main") {
      query.push("terminal=" + encodeURIComponent(this.terminal));
    }
    return query.length ? "?" + query.join("&") : "";
  };

  Session.prototype.onMessage = function (message, seen) {
    if (!Array.isArray(message)) {
      return;
    }
    if (message[0] === "setup") {
      seen.setup = true;
      this.state = "open";
      this.attempt = 0;
      this.failingSince = null;
      this.handshakeFailures = 0;
      this.term.reset(); // the server replays the recent output on every attach
      this.hide();
      this.fit();
      if (!this.observing) {
        this.send(["set_size", this.term.rows, this.term.cols]);
      }
      // Focus after a click on the overlay's button, or if it had focus;
      // never on page load inside a question (it would scroll it away).
      if (this.wantFocus || this.options.focus || this.root.contains(document.activeElement)) {
        this.term.focus();
      }
      this.wantFocus = false;
      this.everOpen = true;
      this.hook("onOpen");
    } else if (message[0] === "stdout" && typeof message[1] === "string") {
      if (!this.notice.hidden && this.notice.getAttribute("data-kind") === "idle") {
        this.notice.hidden = true; // output counts as activity too
      }
      this.term.write(message[1]);
      this.hook("onOutput");
    } else if (message[0] === "disconnect") {
      seen.exited = true;
    } else if (message[0] === "idle_warning" && typeof message[1] === "number") {
      this.notice.setAttribute("data-kind", "idle");
      this.notice.textContent =
        "Nothing has happened for a while: this terminal closes in about " +
        message[1] +
        " s. Press any key to keep it open.";
      this.notice.hidden = false;
    }
  };

  // Says why the terminal closed, in a student's words, and what to do.
  Session.prototype.onSocketClosed = function (code, gotSetup, exited) {
    this.state = "idle";
    this.notice.hidden = true;
    if (this.leaving) {
      return;
    }
    var fresh = this.spec ? "Start again" : null;
    if (this.observing && (code === CLOSE_NOT_RUNNING || code === CLOSE_GONE || exited || code === CLOSE_EXITED)) {
      if (this.spec) {
        this.instanceID = null;
      }
      this.notRunning();
    } else if (exited || code === CLOSE_EXITED) {
      this.stop(
        "The program in this terminal has ended.",
        "Your files are kept. Restart opens a new shell.",
        "Restart",
        "exited"
      );
    } else if (code === CLOSE_TAKEN_OVER) {
      this.stop("This terminal was opened in another tab or window.", "", "Use it here", "taken-over");
    } else if (code === CLOSE_IDLE) {
      this.stop(
        "This terminal was closed because nothing happened in it for a long time.",
        "Your files are kept. Reconnect to go on.",
        "Reconnect",
        "idle"
      );
    } else if (code === CLOSE_GONE) {
      this.instanceID = this.spec ? null : this.instanceID;
      this.stop(
        "This terminal was reset or has expired.",
        this.spec
          ? "Starting again gives you a fresh environment."
          : "Open the link of your assignment again to get a fresh one.",
        fresh,
        "gone"
      );
    } else if (code === CLOSE_TOO_BIG) {
      this.retry("The terminal closed: a message was too large.");
    } else if (code === CLOSE_GOING_AWAY) {
      this.retry("The terminal server is restarting.");
    } else if (!gotSetup) {
      this.handshakeFailed();
    } else {
      this.retry("The connection to the terminal was lost.");
    }
  };

  // The upgrade failed (instance removed: 404; site not allowed: 403; the
  // network): the browser does not say which. The page's own address does
  // for the same-origin page.
  Session.prototype.handshakeFailed = function () {
    var self = this;
    if (this.onRefused && !this.everOpen) {
      // perhaps one terminal too many (a 409 the browser does not show)
      this.onRefused(function () {
        self.handshakeUnknown();
      });
      return;
    }
    this.handshakeUnknown();
  };

  Session.prototype.handshakeUnknown = function () {
    var self = this;
    this.handshakeFailures += 1;
    if (!this.spec && this.instanceID) {
      var generation = this.generation;
      fetch(this.httpBase + "/instance/" + encodeURIComponent(this.instanceID), {
        cache: "no-store",
        headers: { Accept: "application/json" },
      })
        .then(
          function (r) {
            return r.status;
          },
          function () {
            return 0;
          }
        )
        .then(function (status) {
          if (generation !== self.generation) {
            return;
          }
          if (status === 404) {
            self.onSocketClosed(CLOSE_GONE, true, false);
          } else {
            self.retry(status === 503 || status === 0 ? "The server is unavailable, retrying…" : "Could not connect to the terminal.");
          }
        });
      return;
    }
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
  };

  Session.prototype.notRunning = function () {
    var more = this.options.notRunningDetail || "";
    this.stop("The terminal is not running.", more, "Look again", "not-running");
  };

  // Waits, with a countdown, then connects again; gives up after
  // GIVE_UP_AFTER_MS of failures.
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

  window.UaTerminal = { Session: Session, pieces: pieces, phaseText: phaseText };
})();
