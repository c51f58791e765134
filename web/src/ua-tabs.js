/*
 * UaTabs: the instance's terminals as tabs (docs/API.md, "Terminals"), made
 * by UaTerminal.Session (ua-terminal.js) when this file is loaded. The first
 * session is the tab "main"; every other tab is a Session of its own (its
 * xterm.js, its websocket, its overlay) that shares the first one's toolbar,
 * key row, notice and settings.
 *
 *   - On load: a tab per running terminal (GET /instance/{id}/terminals),
 *     always "main".
 *   - "+" opens the next free name ("2", "3", …); × hangs the terminal up
 *     (DELETE /instance/{id}/terminals/{name}) and closes the tab.
 *   - The tabs are an ARIA tablist: Left/Right/Home/End move between them,
 *     Delete closes one; the terminal's own keys are left to the shell.
 *   - A hidden tab's output goes on; its tab is marked (data-activity).
 *   - One terminal too many is refused by the server before the upgrade
 *     (409), which a browser does not show: a new tab whose upgrade fails
 *     while its name is not among the running terminals is taken as that
 *     refusal, said beside the tabs, and the tab goes.
 *   - Observers get the tabs of the running terminals, without + and ×.
 */
(function () {
  "use strict";

  if (window.UaTabs) {
    return;
  }

  var MAIN = "main";
  var NAME = /^[a-z0-9-]{1,16}$/;
  var seq = 0;

  function el(tag, className, text) {
    var node = document.createElement(tag);
    node.className = className;
    if (text) {
      node.textContent = text;
    }
    return node;
  }

  // "main" first, then by number, then by name.
  function order(a, b) {
    if (a === MAIN || b === MAIN) {
      return a === MAIN ? -1 : 1;
    }
    var na = /^\d+$/.test(a) ? Number(a) : NaN;
    var nb = /^\d+$/.test(b) ? Number(b) : NaN;
    if (!isNaN(na) && !isNaN(nb)) {
      return na - nb;
    }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function Tabs(main) {
    this.main = main;
    this.root = main.root;
    this.observing = main.observing;
    this.id = "ua-tabs-" + ++seq;
    this.entries = [];
    this.current = null;
    this.restored = false;
    this.makeBar();
    this.adoptMain();
    this.hookMain();
  }

  Tabs.prototype.makeBar = function () {
    var self = this;
    this.bar = el("div", "ua-tabbar");
    this.list = el("div", "ua-tablist");
    this.list.setAttribute("role", "tablist");
    this.list.setAttribute("aria-label", "Terminals");
    this.list.addEventListener("keydown", function (event) {
      self.onKey(event);
    });
    this.bar.appendChild(this.list);
    if (!this.observing) {
      this.plus = el("button", "ua-tab-new", "+");
      this.plus.type = "button";
      this.plus.setAttribute("aria-label", "New terminal");
      this.plus.title = "New terminal";
      this.plus.addEventListener("click", function () {
        self.openNew();
      });
      this.bar.appendChild(this.plus);
    }
    this.message = el("span", "ua-tab-message");
    this.message.setAttribute("role", "alert");
    this.message.hidden = true;
    this.bar.appendChild(this.message);
    this.main.toolbar.insertAdjacentElement("afterend", this.bar);
  };

  // The first session's screen and overlay go into its pane.
  Tabs.prototype.adoptMain = function () {
    var screen = this.root.querySelector(".ua-screen");
    var pane = el("div", "ua-pane");
    this.template = this.main.overlay.cloneNode(true);
    screen.parentNode.insertBefore(pane, screen);
    pane.appendChild(screen);
    pane.appendChild(this.main.overlay);
    this.add(MAIN, this.main, pane);
    this.show(this.entries[0], false);
  };

  Tabs.prototype.hookMain = function () {
    var self = this;
    this.main.onInstance = function () {
      self.restore();
    };
    this.main.onOpen = function () {
      self.afterMainOpen();
    };
    this.main.onSettings = function () {
      self.each(function (entry) {
        if (entry.session !== self.main) {
          entry.session.applySettings();
        }
      });
    };
    this.main.beforeConfirm = function () {
      self.showMain();
    };
    this.root.addEventListener("ua-terminal-reset", function () {
      self.afterReset();
    });
    if (window.ResizeObserver) {
      new ResizeObserver(function () {
        self.fitShown();
      }).observe(this.root);
    }
    if (this.main.instanceID) {
      this.restore();
    }
  };

  Tabs.prototype.each = function (fn) {
    this.entries.slice().forEach(fn);
  };

  Tabs.prototype.find = function (name) {
    for (var i = 0; i < this.entries.length; i++) {
      if (this.entries[i].name === name) {
        return this.entries[i];
      }
    }
    return null;
  };

  // The session of the shown tab.
  Tabs.prototype.shown = function () {
    return this.current ? this.current.session : this.main;
  };

  Tabs.prototype.url = function (path) {
    return this.main.httpBase + "/instance/" + encodeURIComponent(this.main.instanceID) + path;
  };

  Tabs.prototype.listTerminals = function () {
    return fetch(this.url("/terminals"), { cache: "no-store", mode: "cors", credentials: "omit" }).then(function (r) {
      return r.ok ? r.json() : { terminals: [] };
    });
  };

  // A tab per running terminal, once (after a reload, or a restart of ua).
  Tabs.prototype.restore = function () {
    var self = this;
    if (this.restored) {
      return;
    }
    this.restored = true;
    this.listTerminals().then(
      function (body) {
        (body.terminals || []).forEach(function (t) {
          if (t.running && NAME.test(t.name) && !self.find(t.name)) {
            self.open(t.name);
          }
        });
      },
      function () {
        // the list is not essential: "main" is there
      }
    );
  };

  // A POST /spec of "main" (a reconnect) took every terminal over: the
  // other tabs attach again (now, and once more for a late close).
  Tabs.prototype.afterMainOpen = function () {
    var self = this;
    if (this.main.spec) {
      this.reattach();
      window.setTimeout(function () {
        self.reattach();
      }, 1000);
    }
  };

  Tabs.prototype.reattach = function () {
    var main = this.main;
    this.each(function (entry) {
      var s = entry.session;
      if (s !== main && s.everOpen && s.root.getAttribute("data-close-reason") === "taken-over") {
        s.connect("manual");
      }
    });
  };

  // A reset gives a fresh environment with only "main".
  Tabs.prototype.afterReset = function () {
    var self = this;
    this.each(function (entry) {
      if (entry.session !== self.main) {
        self.remove(entry);
      }
    });
    this.showMain();
  };

  // The tab "main" shown (added again if it was closed).
  Tabs.prototype.showMain = function () {
    if (!this.find(MAIN)) {
      this.add(MAIN, this.main, this.mainPane);
    }
    this.show(this.find(MAIN), false);
  };

  Tabs.prototype.freeName = function () {
    if (!this.find(MAIN)) {
      return MAIN;
    }
    for (var n = 2; ; n++) {
      if (!this.find(String(n))) {
        return String(n);
      }
    }
  };

  Tabs.prototype.openNew = function () {
    var name = this.freeName();
    this.say("");
    var entry = name === MAIN ? this.reopenMain() : this.open(name);
    entry.session.wantFocus = true;
    this.show(entry, false);
    entry.session.term.focus();
  };

  Tabs.prototype.reopenMain = function () {
    var entry = this.add(MAIN, this.main, this.mainPane);
    this.main.leaving = false;
    this.main.connect("manual");
    return entry;
  };

  // A new Session for terminal `name` in a pane made from the overlay.
  Tabs.prototype.open = function (name) {
    var pane = el("div", "ua-pane");
    pane.appendChild(el("div", this.mainPane.querySelector(".ua-screen").className));
    pane.appendChild(this.freshOverlay());
    this.root.insertBefore(pane, this.mainPane.nextSibling);
    pane.hidden = true;
    var session = new window.UaTerminal.Session(pane, {
      httpBase: this.main.httpBase,
      wsBase: this.main.wsBase,
      observing: this.observing,
      instanceID: this.main.instanceID,
      terminal: name,
      shared: this.main,
      notRunningDetail: this.main.options.notRunningDetail,
    });
    var entry = this.add(name, session, pane);
    this.watchRefusal(entry);
    return entry;
  };

  Tabs.prototype.freshOverlay = function () {
    var overlay = this.template.cloneNode(true);
    overlay.removeAttribute("id");
    Array.prototype.forEach.call(overlay.querySelectorAll("[id]"), function (node) {
      node.removeAttribute("id");
    });
    return overlay;
  };

  // The tab (role=tab, with its × beside it) for a session, in order.
  Tabs.prototype.add = function (name, session, pane) {
    var self = this;
    var entry = { name: name, session: session, pane: pane };
    pane.id = this.id + "-pane-" + name;
    pane.setAttribute("role", "tabpanel");
    pane.setAttribute("data-terminal", name);
    if (session === this.main) {
      this.mainPane = pane;
    }
    entry.wrap = el("span", "ua-tab-wrap");
    entry.wrap.setAttribute("role", "presentation");
    entry.tab = this.makeTab(entry);
    entry.wrap.appendChild(entry.tab);
    if (!this.observing) {
      entry.wrap.appendChild(this.makeClose(entry));
    }
    pane.setAttribute("aria-labelledby", entry.tab.id);
    session.onOutput = function () {
      if (self.current !== entry && !entry.tab.hasAttribute("data-activity")) {
        entry.tab.setAttribute("data-activity", "true");
        entry.tab.setAttribute("aria-label", entry.name + ", new output");
      }
    };
    this.entries.push(entry);
    this.entries.sort(function (a, b) {
      return order(a.name, b.name);
    });
    this.place(entry);
    return entry;
  };

  Tabs.prototype.place = function (entry) {
    var index = this.entries.indexOf(entry);
    var next = this.entries[index + 1];
    this.list.insertBefore(entry.wrap, next ? next.wrap : null);
  };

  Tabs.prototype.makeTab = function (entry) {
    var self = this;
    var tab = el("button", "ua-tab", entry.name);
    tab.type = "button";
    tab.id = this.id + "-tab-" + entry.name;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", entry.pane.id);
    tab.setAttribute("aria-selected", "false");
    tab.setAttribute("data-terminal", entry.name);
    tab.tabIndex = -1;
    tab.title = "Terminal " + entry.name;
    if (!this.observing) {
      tab.setAttribute("aria-keyshortcuts", "Delete");
    }
    tab.addEventListener("click", function () {
      self.show(entry, false);
      entry.session.term.focus();
    });
    return tab;
  };

  Tabs.prototype.makeClose = function (entry) {
    var self = this;
    var close = el("button", "ua-tab-close", "×");
    close.type = "button";
    close.tabIndex = -1; // Delete on the tab does the same
    close.setAttribute("aria-label", "Close terminal " + entry.name);
    close.title = "Close terminal " + entry.name;
    close.addEventListener("click", function () {
      self.close(entry);
    });
    return close;
  };

  // Shows one tab's pane, fits its terminal; `focusTab`: the keyboard.
  Tabs.prototype.show = function (entry, focusTab) {
    this.current = entry;
    this.entries.forEach(function (e) {
      var on = e === entry;
      e.tab.setAttribute("aria-selected", on ? "true" : "false");
      e.tab.tabIndex = on ? 0 : -1;
      e.pane.hidden = !on;
    });
    entry.tab.removeAttribute("data-activity");
    entry.tab.removeAttribute("aria-label");
    this.root.setAttribute("data-terminal", entry.name);
    this.fitShown();
    if (focusTab) {
      entry.tab.focus();
    }
  };

  Tabs.prototype.fitShown = function () {
    var session = this.shown();
    window.requestAnimationFrame(function () {
      session.fit();
    });
  };

  // Arrow keys, Home and End move between the tabs; Delete closes one.
  Tabs.prototype.onKey = function (event) {
    var index = this.entries.indexOf(this.current);
    var last = this.entries.length - 1;
    var to = {
      ArrowRight: index === last ? 0 : index + 1,
      ArrowLeft: index === 0 ? last : index - 1,
      Home: 0,
      End: last,
    }[event.key];
    if (to !== undefined && index >= 0) {
      event.preventDefault();
      this.show(this.entries[to], true);
    } else if (event.key === "Delete" && !this.observing && this.current) {
      event.preventDefault();
      this.close(this.current);
    }
  };

  // Hangs the terminal up (DELETE), then the tab goes.
  Tabs.prototype.close = function (entry) {
    var self = this;
    var session = entry.session;
    session.leaving = true;
    session.closeSocket();
    session.state = "stopped";
    fetch(this.url("/terminals/" + encodeURIComponent(entry.name)), {
      method: "DELETE",
      mode: "cors",
      credentials: "omit",
    }).then(
      function (r) {
        if (r.ok || r.status === 404) {
          self.remove(entry);
        } else {
          self.closeFailed(entry, "HTTP " + r.status);
        }
      },
      function () {
        self.closeFailed(entry, "the server cannot be reached");
      }
    );
  };

  Tabs.prototype.closeFailed = function (entry, why) {
    this.say("The terminal " + entry.name + " could not be closed (" + why + ").");
    entry.session.leaving = false;
    entry.session.connect("reconnect");
  };

  // The tab goes; "main" stays as a session (the page's), only hidden.
  Tabs.prototype.remove = function (entry) {
    var index = this.entries.indexOf(entry);
    if (index < 0) {
      return;
    }
    this.entries.splice(index, 1);
    entry.wrap.remove();
    if (entry.session === this.main) {
      entry.pane.hidden = true;
    } else {
      entry.session.dispose();
      entry.pane.remove();
    }
    if (this.entries.length === 0) {
      this.reopenMain();
    }
    if (this.current === entry || !this.current) {
      this.show(this.entries[Math.min(index, this.entries.length - 1)], true);
    }
  };

  // A new tab's upgrade failed: one terminal too many, if its name does not
  // run while others do (the server's 409); else the usual retry.
  Tabs.prototype.watchRefusal = function (entry) {
    var self = this;
    entry.session.onRefused = function (otherwise) {
      self.listTerminals().then(
        function (body) {
          if (!self.refused(entry, body.terminals || [])) {
            otherwise();
          }
        },
        otherwise
      );
    };
  };

  Tabs.prototype.refused = function (entry, terminals) {
    var running = terminals
      .filter(function (t) {
        return t.running;
      })
      .map(function (t) {
        return t.name;
      });
    if (running.length === 0 || running.indexOf(entry.name) >= 0) {
      return false;
    }
    this.remove(entry);
    this.say(
      "No new terminal: this environment already runs as many terminals as it may (" +
        running.join(", ") +
        "). Close one first."
    );
    return true;
  };

  // A word beside the tabs (the terminal's notice would cover them).
  Tabs.prototype.say = function (text) {
    this.message.textContent = text;
    this.message.hidden = !text;
  };

  window.UaTabs = { Tabs: Tabs, order: order };
})();
