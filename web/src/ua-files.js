/*
 * UaFiles: upload of files into the student's environment and download
 * of a file out of it (docs/API.md, "Files in" and "Graded files"), shared
 * by ua's own pages (/instance/{id}, /start) and the PrairieLearn element
 * <uassign_terminal>. Never made in observe mode: staff observers must not
 * write.
 *
 *   var files = new UaFiles.Panel(options)
 *
 * options:
 *   httpBase       the server ("" for the same origin)
 *   instanceID()   a Promise of the instance's ID
 *   dropTarget     an element that takes files dropped on it (the terminal)
 *   root           the terminal's root: its "ua-terminal-reset" clears the messages
 *   onLayout()     called when the messages appear, change or are hidden
 *
 * files.controls (the Upload button, its hidden file input, a path field
 * and the Download button) and files.region (the messages, a polite live
 * region) are for the caller to place.
 *
 * Upload: each file is PUT to {httpBase}/instance/{id}/files?path=<its
 * name>, so it lands in the WORKDIR, written as the student; one at a
 * time, with its progress and then its result in words. Files over
 * MAX_BYTES are refused here; the server's limit decides (its 413
 * sentence is shown). Download: GET ...files?path=P, saved with a
 * temporary <a download>. Server text is always set as text, never HTML.
 */
(function () {
  "use strict";

  if (window.UaFiles) {
    return;
  }

  // The server's default --max-upload-mb: larger files are refused before
  // sending them (the server's answer decides for the rest).
  var MAX_BYTES = 16 * 1024 * 1024;

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

  // 1234 → "1.2 kB" (decimal units, as file managers show them).
  function size(n) {
    if (n < 1000) {
      return n + (n === 1 ? " byte" : " bytes");
    }
    var units = ["kB", "MB", "GB"];
    var value = n;
    var i = -1;
    while (value >= 1000 && i < units.length - 1) {
      value /= 1000;
      i += 1;
    }
    return value.toFixed(1) + " " + units[i];
  }

  function serverError(status, body) {
    if (body && typeof body.error === "string" && body.error) {
      return body.error;
    }
    return status ? "The server answered HTTP " + status + "." : "The server could not be reached.";
  }

  function baseName(path) {
    var parts = String(path).split("/").filter(Boolean);
    return parts.length ? parts[parts.length - 1] : "download";
  }

  function Panel(options) {
    this.options = options;
    this.httpBase = options.httpBase || "";
    this.queue = Promise.resolve();
    this.makeControls();
    this.makeRegion();
    var self = this;
    if (options.dropTarget) {
      this.listenForDrops(options.dropTarget);
    }
    if (options.root) {
      options.root.addEventListener("ua-terminal-reset", function () {
        self.clear();
      });
    }
  }

  Panel.prototype.makeControls = function () {
    var self = this;
    this.controls = el("span", "ua-files-controls");
    this.input = el("input", "ua-files-input");
    this.input.type = "file";
    this.input.multiple = true;
    this.input.hidden = true;
    this.input.tabIndex = -1;
    this.input.setAttribute("aria-hidden", "true");
    this.uploadButton = el("button", "ua-files-upload", "Upload");
    this.uploadButton.type = "button";
    this.uploadButton.setAttribute("data-tool", "upload");
    this.uploadButton.title = "Upload files into your working directory (or drop them on the terminal)";
    this.path = el("input", "ua-files-path");
    this.path.type = "text";
    this.path.placeholder = "file to download";
    this.path.setAttribute("aria-label", "Path of the file to download");
    this.path.spellcheck = false;
    this.path.autocomplete = "off";
    this.downloadButton = el("button", "ua-files-download", "Download");
    this.downloadButton.type = "button";
    this.downloadButton.setAttribute("data-tool", "download");
    this.controls.appendChild(this.uploadButton);
    this.controls.appendChild(this.input);
    this.controls.appendChild(this.path);
    this.controls.appendChild(this.downloadButton);
    this.uploadButton.addEventListener("click", function () {
      self.input.click();
    });
    this.input.addEventListener("change", function () {
      var picked = Array.prototype.slice.call(self.input.files || []);
      self.input.value = ""; // the same file can be picked again
      self.upload(picked);
    });
    this.downloadButton.addEventListener("click", function () {
      self.download(self.path.value);
    });
    this.path.addEventListener("keydown", function (event) {
      if (event.key === "Enter") {
        event.preventDefault();
        self.download(self.path.value);
      }
    });
  };

  Panel.prototype.makeRegion = function () {
    var self = this;
    this.region = el("section", "ua-files");
    this.region.setAttribute("aria-label", "Uploads and downloads");
    this.region.hidden = true;
    this.list = el("ul", "ua-files-list");
    this.list.setAttribute("aria-live", "polite");
    this.list.setAttribute("role", "log");
    this.close = el("button", "ua-files-close", "×");
    this.close.type = "button";
    this.close.setAttribute("aria-label", "Hide the messages of uploads and downloads");
    this.region.appendChild(this.close);
    this.region.appendChild(this.list);
    this.close.addEventListener("click", function () {
      self.clear();
      self.uploadButton.focus();
    });
  };

  Panel.prototype.listenForDrops = function (target) {
    var self = this;
    var hasFiles = function (event) {
      var types = event.dataTransfer && event.dataTransfer.types;
      return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
    };
    target.addEventListener("dragover", function (event) {
      if (hasFiles(event)) {
        event.preventDefault();
        event.dataTransfer.dropEffect = "copy";
        target.classList.add("ua-files-dropping");
      }
    });
    target.addEventListener("dragleave", function (event) {
      if (!event.relatedTarget || !target.contains(event.relatedTarget)) {
        target.classList.remove("ua-files-dropping");
      }
    });
    target.addEventListener("drop", function (event) {
      target.classList.remove("ua-files-dropping");
      if (!hasFiles(event)) {
        return;
      }
      event.preventDefault();
      self.upload(self.dropped(event.dataTransfer));
    });
  };

  // The dropped files; a folder is said, not sent.
  Panel.prototype.dropped = function (transfer) {
    var files = Array.prototype.slice.call(transfer.files || []);
    var items = transfer.items ? Array.prototype.slice.call(transfer.items) : [];
    var self = this;
    return files.filter(function (file, i) {
      var entry = items[i] && items[i].webkitGetAsEntry ? items[i].webkitGetAsEntry() : null;
      if (entry && entry.isDirectory) {
        self.say("error", file.name + " is a folder: upload the files in it instead.");
        return false;
      }
      return true;
    });
  };

  Panel.prototype.layout = function () {
    if (this.options.onLayout) {
      this.options.onLayout();
    }
  };

  Panel.prototype.clear = function () {
    this.list.textContent = "";
    this.region.hidden = true;
    this.layout();
  };

  // A message line (kind: busy | done | error); returns it to be updated.
  Panel.prototype.say = function (kind, text) {
    var line = el("li", "ua-files-message", text);
    line.setAttribute("data-kind", kind);
    this.list.appendChild(line);
    while (this.list.children.length > 20) {
      this.list.removeChild(this.list.firstChild);
    }
    this.region.hidden = false;
    this.layout();
    return line;
  };

  Panel.prototype.update = function (line, kind, text) {
    line.setAttribute("data-kind", kind);
    line.textContent = text;
  };

  Panel.prototype.url = function (id, path) {
    return this.httpBase + "/instance/" + encodeURIComponent(id) + "/files?path=" + encodeURIComponent(path);
  };

  // Uploads the files one after another (after any upload still going);
  // resolves to [{name, ok, status, text}].
  Panel.prototype.upload = function (files) {
    var self = this;
    var outcomes = [];
    files.forEach(function (file) {
      self.queue = self.queue.then(function () {
        return self.uploadOne(file).then(function (outcome) {
          outcomes.push(outcome);
        });
      });
    });
    return this.queue.then(function () {
      return outcomes;
    });
  };

  Panel.prototype.uploadOne = function (file) {
    var self = this;
    if (file.size > MAX_BYTES) {
      var text = file.name + " was not uploaded: it is " + size(file.size) + ", over the limit of 16 MiB per file.";
      this.say("error", text);
      return Promise.resolve({ name: file.name, ok: false, status: 0, text: text });
    }
    var line = this.say("busy", "Uploading " + file.name + "…");
    return this.options
      .instanceID()
      .then(function (id) {
        var shown = 0;
        return self.put(self.url(id, file.name), file, function (sent) {
          // In steps of a quarter: each change is read out (a live region).
          var step = file.size ? Math.floor((sent / file.size) * 4) * 25 : 0;
          if (step > shown && step < 100) {
            shown = step;
            self.update(line, "busy", "Uploading " + file.name + "… " + step + "%");
          }
        });
      })
      .then(
        function (got) {
          var ok = got.status === 200;
          var written = got.body && typeof got.body.size === "number" ? got.body.size : file.size;
          var said = ok
            ? "Uploaded " + file.name + " (" + size(written) + ")."
            : file.name + " was not uploaded: " + serverError(got.status, got.body);
          self.update(line, ok ? "done" : "error", said);
          return { name: file.name, ok: ok, status: got.status, text: said };
        },
        function (e) {
          var said = file.name + " was not uploaded: " + String((e && e.message) || e);
          self.update(line, "error", said);
          return { name: file.name, ok: false, status: 0, text: said };
        }
      );
  };

  // XMLHttpRequest, not fetch: it reports the upload's progress.
  Panel.prototype.put = function (url, file, progress) {
    return new Promise(function (resolve, reject) {
      var xhr = new XMLHttpRequest();
      xhr.open("PUT", url);
      xhr.withCredentials = false;
      xhr.upload.addEventListener("progress", function (event) {
        if (event.lengthComputable) {
          progress(event.loaded);
        }
      });
      xhr.addEventListener("load", function () {
        resolve({ status: xhr.status, body: parseJson(xhr.responseText) });
      });
      xhr.addEventListener("error", function () {
        reject(new Error("the server could not be reached, or the file could not be read."));
      });
      xhr.addEventListener("timeout", function () {
        reject(new Error("the upload took too long."));
      });
      xhr.setRequestHeader("Content-Type", "application/octet-stream");
      xhr.send(file);
    });
  };

  // Downloads one file; resolves to {ok, status, text, bytes}.
  Panel.prototype.download = function (path) {
    path = String(path || "").trim();
    if (!path) {
      var none = "Type the path of a file to download, e.g. notes.txt or src/main.c.";
      this.say("error", none);
      this.path.focus();
      return Promise.resolve({ ok: false, status: 0, text: none });
    }
    var self = this;
    var line = this.say("busy", "Downloading " + path + "…");
    return this.options
      .instanceID()
      .then(function (id) {
        return fetch(self.url(id, path), { mode: "cors", credentials: "omit", cache: "no-store" });
      })
      .then(function (response) {
        return response.text().then(function (text) {
          return self.received(line, path, response.status, parseJson(text));
        });
      })
      .catch(function (e) {
        var why = e instanceof TypeError ? "the server could not be reached." : String((e && e.message) || e);
        var said = path + " was not downloaded: " + why;
        self.update(line, "error", said);
        return { ok: false, status: 0, text: said };
      });
  };

  Panel.prototype.received = function (line, path, status, body) {
    var file = body && Array.isArray(body.files) ? body.files[0] : null;
    var said;
    if (status === 200 && file && typeof file.contents === "string") {
      var bytes = decode(file.contents);
      save(bytes, baseName(path));
      said = "Downloaded " + path + " (" + size(bytes.length) + ").";
      this.update(line, "done", said);
      return { ok: true, status: status, text: said, bytes: bytes.length };
    }
    if (status === 200) {
      said = "There is no file " + path + " that you can read: it does not exist, is a folder, or you may not read it.";
    } else {
      said = path + " was not downloaded: " + serverError(status, body);
    }
    this.update(line, "error", said);
    return { ok: false, status: status, text: said };
  };

  function decode(base64) {
    var binary = window.atob(base64);
    var bytes = new Uint8Array(binary.length);
    for (var i = 0; i < binary.length; i++) {
      bytes[i] = binary.charCodeAt(i);
    }
    return bytes;
  }

  // Saves bytes as a download through a temporary object URL.
  function save(bytes, name) {
    var url = URL.createObjectURL(new Blob([bytes], { type: "application/octet-stream" }));
    var link = el("a", "");
    link.href = url;
    link.download = name;
    link.hidden = true;
    document.body.appendChild(link);
    link.click();
    document.body.removeChild(link);
    window.setTimeout(function () {
      URL.revokeObjectURL(url);
    }, 60000);
  }

  window.UaFiles = { Panel: Panel, MAX_BYTES: MAX_BYTES };
})();
