// Closeloop web chat: post the page's forms with fetch and redraw the chat from JSON, without a reload.
// Without this file (scripts off) the same forms post normally and the server answers with a whole page.
// Every text goes in through textContent or an attribute, never as HTML.
"use strict";
(function () {
  var chat = document.getElementById("chat");
  var prompt = document.getElementById("prompt");
  if (!chat || !prompt || !window.fetch || !window.URLSearchParams || !window.FormData) return;
  var csrf = document.querySelector("input[name=csrf]").value;
  var action = document.querySelector("form[data-chat]").getAttribute("action");
  var busy = false;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) { node.setAttribute(name, attrs[name]); });
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function bubble(who, text) { return el("li", { "class": "bubble " + who }, text); }

  function fill(parent, children) {
    while (parent.firstChild) parent.removeChild(parent.firstChild);
    children.forEach(function (child) { parent.appendChild(child); });
  }

  function sendRow(field, label) {
    var row = el("div", { "class": "send-row" });
    row.appendChild(field);
    row.appendChild(el("button", { type: "submit", "class": "send" }, label));
    return row;
  }

  function questionForm(reply, data) {
    var form = el("form", { method: "post", action: action, "class": "answer", "data-chat": "" });
    form.appendChild(el("input", { type: "hidden", name: "csrf", value: csrf }));
    form.appendChild(el("input", { type: "hidden", name: "nonce", value: data.nonce }));
    if (reply.ask_contact) {
      form.appendChild(el("label", { "for": "phone" }, reply.ask_contact));
      form.appendChild(sendRow(el("input", { type: "tel", id: "phone", name: "phone", autocomplete: "tel",
        maxlength: "32", required: "", placeholder: data.labels.phone_placeholder }), data.labels.send));
    } else if (reply.expects === "text") {
      form.appendChild(sendRow(el("textarea", { name: "text", rows: "3", maxlength: "2000", required: "",
        "aria-label": reply.text, placeholder: data.labels.text_placeholder }), data.labels.send));
    }
    reply.buttons.forEach(function (row) {
      var choices = el("div", { "class": "choices" });
      row.forEach(function (button) {
        choices.appendChild(el("button", { type: "submit", name: "choice", value: button.data, formnovalidate: "" },
          button.label));
      });
      form.appendChild(choices);
    });
    return form;
  }

  function render(data) {
    var items = [];
    data.exchanges.forEach(function (e) { items.push(bubble("bot", e.question), bubble("me", e.answer)); });
    data.replies.concat(data.prompt).forEach(function (r) { items.push(bubble("bot", r.text)); });
    fill(chat, items);
    fill(prompt, data.prompt.map(function (reply) { return questionForm(reply, data); }));
    document.querySelectorAll("input[name=nonce]").forEach(function (input) { input.value = data.nonce; });
    document.querySelectorAll("[data-label]").forEach(function (node) {
      node.textContent = data.labels[node.getAttribute("data-label")];
    });
    var toggle = document.querySelector("[data-switch]");
    toggle.value = data.switch.data;
    toggle.textContent = data.switch.label;
    chat.setAttribute("data-failed", data.labels.sending_failed);
    document.documentElement.lang = data.language === "zh" ? "zh-CN" : "en";
    document.title = data.labels.title;
    var field = prompt.querySelector("textarea, input[type=tel]");
    if (field) field.focus();
    window.scrollTo(0, document.body.scrollHeight);
  }

  function fail(message) {
    chat.appendChild(bubble("bot error", message || chat.getAttribute("data-failed")));
    window.scrollTo(0, document.body.scrollHeight);
  }

  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (!form.hasAttribute("data-chat")) return;
    event.preventDefault();
    if (busy) return; // one answer at a time; the nonce would drop a second copy anyway
    var body = new URLSearchParams(new FormData(form));
    if (event.submitter && event.submitter.name) body.append(event.submitter.name, event.submitter.value);
    busy = true;
    document.body.classList.add("busy");
    fetch(form.getAttribute("action"), {
      method: "POST", body: body, credentials: "same-origin", headers: { Accept: "application/json" }
    }).then(function (response) {
      return response.json().then(function (data) { return data.error ? fail(data.error) : render(data); });
    }).catch(function () { fail(); }).then(function () {
      busy = false;
      document.body.classList.remove("busy");
    });
  });
})();
