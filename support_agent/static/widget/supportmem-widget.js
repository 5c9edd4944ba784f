/*
 * supportmem chat widget: no framework, one script.
 *
 *   <script src="https://YOUR-SUPPORTMEM/static/widget/supportmem-widget.js"
 *           data-publishable-key="pk_…" data-user-id="user-42" data-user-hash="HMAC-SHA256 hex from your backend"
 *           data-user-name="Ana" data-api-base="https://YOUR-SUPPORTMEM" data-target="#chat"></script>
 *
 * It exchanges (user_id, user_hash) for a short-lived token, loads the conversation history, and sends
 * messages whose steps and reply stream back as server-sent events over a POST (fetch + ReadableStream,
 * since EventSource cannot POST). Errors (network down, throttled, expired session) are shown in the
 * widget and the typed message is kept so that it can be sent again.
 */
(function () {
  "use strict";

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function SupportmemWidget(options) {
    this.apiBase = (options.apiBase || "").replace(/\/$/, "");
    this.key = options.publishableKey;
    this.userId = options.userId;
    this.userHash = options.userHash;
    this.userName = options.userName || "";
    this.token = null;
    this.busy = false;
    this.render(options.target);
  }

  SupportmemWidget.prototype.url = function (path) {
    return this.apiBase + "/api/widget/" + encodeURIComponent(this.key) + path;
  };

  SupportmemWidget.prototype.render = function (target) {
    var root = el("section", "smw");
    root.setAttribute("aria-label", "Support chat");
    var header = el("header", "smw-header", "Support");
    this.log = el("ol", "smw-log");
    this.log.setAttribute("aria-live", "polite");
    this.status = el("div", "smw-status");
    this.status.setAttribute("role", "status");
    var form = el("form", "smw-form");
    this.input = el("textarea", "smw-input");
    this.input.placeholder = "Type your message…";
    this.input.rows = 2;
    this.input.maxLength = 4000;
    this.sendButton = el("button", "smw-send", "Send");
    this.sendButton.type = "submit";
    form.appendChild(this.input);
    form.appendChild(this.sendButton);
    root.appendChild(header);
    root.appendChild(this.log);
    root.appendChild(this.status);
    root.appendChild(form);
    (target || document.body).appendChild(root);
    var self = this;
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      self.send();
    });
    this.input.addEventListener("keydown", function (event) {
      if (event.key === "Enter" && !event.shiftKey) {
        event.preventDefault();
        self.send();
      }
    });
  };

  SupportmemWidget.prototype.showStatus = function (text, isError) {
    this.status.textContent = text || "";
    this.status.className = "smw-status" + (isError ? " smw-error" : "");
  };

  SupportmemWidget.prototype.addMessage = function (role, body) {
    var item = el("li", "smw-msg smw-" + role);
    item.appendChild(el("span", "smw-who", role === "customer" ? "You" : "Support"));
    item.appendChild(el("p", "smw-body", body));
    this.log.appendChild(item);
    this.log.scrollTop = this.log.scrollHeight;
    return item;
  };

  SupportmemWidget.prototype.addStep = function (label) {
    var item = el("li", "smw-step", label);
    this.log.appendChild(item);
    this.log.scrollTop = this.log.scrollHeight;
  };

  /* A readable error from an API answer in the {"error": {...}} shape. */
  SupportmemWidget.prototype.errorText = function (response, body) {
    if (response.status === 429) {
      var wait = (body && body.error && body.error.details && body.error.details.retry_after) ||
        response.headers.get("Retry-After");
      return "You're sending messages too quickly. Please wait " + (wait || "a few") + " seconds and try again.";
    }
    if (body && body.error && body.error.message) return body.error.message;
    return "Something went wrong (HTTP " + response.status + ").";
  };

  SupportmemWidget.prototype.request = function (method, path, body, accept) {
    var self = this;
    var headers = { "Accept": accept || "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    if (this.token) headers["Authorization"] = "Bearer " + this.token;
    return fetch(this.url(path), {
      method: method,
      headers: headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    }).catch(function () {
      throw new Error("Can't reach support right now. Check your connection and try again.");
    }).then(function (response) {
      if (response.status === 401 && self.token && path !== "/session/") {
        // The short-lived token expired: start a new session once, then retry.
        self.token = null;
        return self.start().then(function () { return self.request(method, path, body, accept); });
      }
      if (!response.ok) {
        return response.json().catch(function () { return null; }).then(function (errorBody) {
          throw new Error(self.errorText(response, errorBody));
        });
      }
      return response;
    });
  };

  SupportmemWidget.prototype.start = function () {
    var self = this;
    return this.request("POST", "/session/", {
      user_id: this.userId, user_hash: this.userHash, name: this.userName,
    }).then(function (response) { return response.json(); }).then(function (session) {
      self.token = session.token;
    });
  };

  SupportmemWidget.prototype.loadHistory = function () {
    var self = this;
    return this.request("GET", "/messages/?limit=100").then(function (response) {
      return response.json();
    }).then(function (messages) {
      self.log.textContent = "";
      messages.forEach(function (message) { self.addMessage(message.author_role, message.body); });
      self.showStatus(messages.length ? "" : "Ask us anything.");
    });
  };

  SupportmemWidget.prototype.init = function () {
    var self = this;
    this.showStatus("Connecting…");
    return this.start().then(function () { return self.loadHistory(); }).catch(function (error) {
      self.showStatus(error.message, true);
    });
  };

  /* Parse a text/event-stream body chunk by chunk, calling onEvent(type, data) per event. */
  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function dispatch(block) {
      var type = "message";
      var data = [];
      block.split("\n").forEach(function (line) {
        if (line.indexOf("event:") === 0) type = line.slice(6).trim();
        else if (line.indexOf("data:") === 0) data.push(line.slice(5).trim());
      });
      if (data.length) onEvent(type, JSON.parse(data.join("\n")));
    }
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) {
          if (buffer.trim()) dispatch(buffer);
          return;
        }
        buffer += decoder.decode(chunk.value, { stream: true });
        var blocks = buffer.split("\n\n");
        buffer = blocks.pop();
        blocks.forEach(dispatch);
        return pump();
      });
    }
    return pump();
  }

  SupportmemWidget.prototype.send = function () {
    var text = this.input.value.trim();
    if (!text || this.busy) return;
    var self = this;
    this.busy = true;
    this.sendButton.disabled = true;
    this.showStatus("Sending…");
    var gotReply = false;
    this.request("POST", "/messages/", { body: text }, "text/event-stream, application/json")
      .then(function (response) {
        self.input.value = "";
        return readEvents(response, function (type, data) {
          if (type === "message") self.addMessage("customer", data.body);
          else if (type === "run_started") self.showStatus("Thinking…");
          else if (type === "step" && data.label) self.addStep(data.label);
          else if (type === "reply") { gotReply = true; self.addMessage("agent", data.text); }
          else if (type === "error") self.showStatus(data.message, true);
        });
      })
      .then(function () {
        if (gotReply) self.showStatus("");
        else if (!self.status.classList.contains("smw-error")) self.showStatus("No reply this time; please try again.", true);
      })
      .catch(function (error) { self.showStatus(error.message, true); })
      .then(function () {
        self.busy = false;
        self.sendButton.disabled = false;
        self.input.focus();
      });
  };

  window.SupportmemWidget = SupportmemWidget;

  var script = document.currentScript;
  if (script && script.dataset.publishableKey) {
    var options = {
      apiBase: script.dataset.apiBase || "",
      publishableKey: script.dataset.publishableKey,
      userId: script.dataset.userId,
      userHash: script.dataset.userHash,
      userName: script.dataset.userName,
      target: script.dataset.target ? document.querySelector(script.dataset.target) : null,
    };
    var boot = function () { new SupportmemWidget(options).init(); };
    if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", boot);
    else boot();
  }
})();
