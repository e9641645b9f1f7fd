// sipprov console: small progressive enhancements. Every page works without it.
"use strict";

function copyButtons() {
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    button.addEventListener("click", function () {
      var field = document.getElementById(button.dataset.copy);
      if (!field) { return; }
      field.select();
      var done = function () { button.classList.add("copied"); };
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(field.value).then(done, function () { document.execCommand("copy"); done(); });
      } else {
        document.execCommand("copy");
        done();
      }
    });
  });
}

function autosubmit() {
  document.querySelectorAll("form[data-autosubmit] select").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
}

function livePreview() {
  var form = document.querySelector("form[data-preview]");
  if (!form) { return; }
  var names = ["first_name", "last_name", "login", "extension"];
  var timer = null;
  var show = function (id, value) {
    var el = document.getElementById(id);
    if (el) { el.textContent = (value === null || value === undefined || value === "") ? "—" : String(value); }
  };
  var update = function () {
    var params = new URLSearchParams();
    names.forEach(function (n) { params.set(n, form.elements[n] ? form.elements[n].value : ""); });
    fetch(form.dataset.preview + "?" + params.toString(), {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (p) {
        if (!p) { return; }
        show("preview-login", p.login);
        show("preview-caller-id", form.elements.caller_id.value || p.caller_id);
        show("preview-chat-name", form.elements.chat_name.value || p.chat_name);
        show("preview-extension", p.extension);
        document.getElementById("preview-taken").hidden = !p.login_taken;
      });
  };
  names.concat(["caller_id", "chat_name"]).forEach(function (n) {
    if (form.elements[n]) {
      form.elements[n].addEventListener("input", function () { clearTimeout(timer); timer = setTimeout(update, 200); });
    }
  });
  update();
}

function derivedPenalty() {
  var priority = document.getElementById("priority");
  var out = document.getElementById("derived-penalty");
  if (!priority || !out) { return; }
  var update = function () {
    var p = parseInt(priority.value, 10);
    out.textContent = isNaN(p) ? "—" : String(Math.max(0, p - 1));
  };
  priority.addEventListener("input", update);
  update();
}

function importProgress() {
  var box = document.getElementById("import-progress");
  if (!box) { return; }
  var bar = document.getElementById("progress-bar");
  var step = document.getElementById("progress-step");
  var poll = function () {
    fetch(box.dataset.progress, {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (p) {
        if (p.finished) { window.location.reload(); return; }
        step.textContent = p.step ? p.step + " " + p.done + (p.total ? "/" + p.total : "") : "";
        if (p.total) { bar.value = Math.round(100 * p.done / p.total); }
        setTimeout(poll, 500);
      }, function () { setTimeout(poll, 2000); });
  };
  poll();
}

document.addEventListener("DOMContentLoaded", function () {
  copyButtons();
  autosubmit();
  livePreview();
  derivedPenalty();
  importProgress();
});
