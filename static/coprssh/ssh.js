/* coprssh SSH pages: the live key preview of the forms that take keys (resubmit with SSH, keep
 * the builder if the build fails, with its keys shown while that box is ticked), and on the build
 * page the Copy button of the ssh command, the expiry countdown and the Release confirmation,
 * also for the panels build.js puts in after the page loaded.
 * Plain JavaScript, no framework; the pages work without it (the server checks every key
 * again on submit, and shows the expiry as an absolute time).
 *
 * Keys, comments and messages are user text: they reach the page only as text nodes
 * (textContent), never as HTML.
 */
(function () {
  "use strict";

  // --- the key preview -----------------------------------------------------------------

  const PREVIEW_DELAY_MS = 400;

  function element(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function describeKey(key) {
    // "ssh-ed25519 · 256 bits · SHA256:… · alice@laptop"
    const item = element("li", "key");
    item.appendChild(document.createTextNode(key.type + " · " + key.bits + " bits · "));
    item.appendChild(element("code", "", key.fingerprint));
    if (key.comment) item.appendChild(document.createTextNode(" · " + key.comment));
    return item;
  }

  function describeLine(line) {
    const item = element("li", line.status);
    const where = line.line ? "line " + line.line + ": " : "";
    if (line.status === "key") {
      item.appendChild(document.createTextNode(where));
      const keys = line.keys || [];
      if (keys.length === 1) {
        const one = describeKey(keys[0]);
        item.append(...Array.from(one.childNodes));
      }
    } else if (line.status === "reference") {
      const keys = line.keys || [];
      item.textContent = where + line.message + " → " + keys.length + " key" + (keys.length === 1 ? "" : "s");
      if (keys.length) {
        const list = element("ul");
        for (const key of keys) list.appendChild(describeKey(key));
        item.appendChild(list);
      }
    } else if (line.status === "duplicate") {
      item.textContent = where + line.message;
    } else {
      item.textContent = where + (line.message || "not accepted");
    }
    return item;
  }

  // A refused request (400) says why per field, DRF style: {"ssh_public_keys": ["…"]}.
  function problems(data) {
    const found = [];
    if (!data || typeof data !== "object") return found;
    for (const value of Object.values(data)) {
      if (typeof value === "string") found.push(value);
      else if (Array.isArray(value)) for (const v of value) if (typeof v === "string") found.push(v);
    }
    return found;
  }

  function setUpKeyPreview(textarea, box) {
    const url = box.dataset.checkUrl;
    const status = box.querySelector(".preview-status");
    const list = box.querySelector("ul.preview");
    const tokenInput = textarea.form && textarea.form.querySelector('input[name="csrfmiddlewaretoken"]');
    const token = tokenInput ? tokenInput.value : "";
    let timer = null;
    let asked = 0; // only the answer to the latest text is shown

    function show(message, lines) {
      box.hidden = false;
      status.textContent = message;
      list.replaceChildren(...(lines || []));
    }

    async function check() {
      timer = null;
      const text = textarea.value;
      const mine = ++asked;
      if (!text.trim()) {
        box.hidden = true;
        list.replaceChildren();
        return;
      }
      status.textContent = "Checking…";
      box.hidden = false;
      let response;
      let data = null;
      try {
        response = await fetch(url, {
          method: "POST",
          credentials: "same-origin",
          cache: "no-store",
          headers: {
            "Content-Type": "application/json",
            Accept: "application/json",
            "X-CSRFToken": token,
          },
          body: JSON.stringify({ ssh_public_keys: text }),
        });
        data = await response.json().catch(() => null);
      } catch (error) {
        if (mine === asked) show("The keys could not be checked now; they are checked again when you submit.");
        return;
      }
      if (mine !== asked) return;
      if (response.status === 401 || response.status === 403) {
        show("Log in again to check the keys here; they are checked again when you submit.");
        return;
      }
      if (!response.ok || !data || !Array.isArray(data.lines)) {
        const why = problems(data);
        show(why.length ? "Not accepted: " + why.join(" ") : "The keys could not be checked (HTTP " + response.status + ").");
        return;
      }
      const keys = data.lines.reduce((n, line) => n + (line.status === "error" ? 0 : (line.keys || []).length), 0);
      const refused = data.lines.filter((line) => line.status === "error").length;
      const summary = refused
        ? refused + " line" + (refused === 1 ? " is" : "s are") + " not accepted; fix or remove " + (refused === 1 ? "it" : "them") + " before submitting."
        : keys + " key" + (keys === 1 ? "" : "s") + " will be deployed" + (keys ? ":" : ".");
      show(summary, data.lines.map(describeLine));
    }

    function later() {
      if (timer !== null) window.clearTimeout(timer);
      timer = window.setTimeout(check, PREVIEW_DELAY_MS);
    }

    textarea.addEventListener("input", later);
    if (textarea.value.trim()) check(); // the form came back with errors: show each line again
  }

  // --- the SSH panel: copy, countdown, release -----------------------------------------

  function selectText(node) {
    const range = document.createRange();
    range.selectNodeContents(node);
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
  }

  function flash(button, text) {
    const label = button.dataset.label || button.textContent;
    button.dataset.label = label;
    button.textContent = text;
    window.setTimeout(() => {
      button.textContent = label;
    }, 2000);
  }

  async function copy(button) {
    const panel = button.closest("[data-ssh]");
    const code = panel && panel.querySelector('[data-ssh-field="ssh_command"]');
    if (!code || !code.textContent) return;
    try {
      // Only in secure contexts (https, localhost); elsewhere select it for Ctrl+C.
      if (!navigator.clipboard || !window.isSecureContext) throw new Error("no clipboard");
      await navigator.clipboard.writeText(code.textContent);
      flash(button, "Copied");
    } catch (error) {
      selectText(code);
      flash(button, "Selected: press Ctrl+C");
    }
  }

  function two(n) {
    return (n < 10 ? "0" : "") + n;
  }

  function formatLeft(ms) {
    const total = Math.floor(ms / 1000);
    const hours = Math.floor(total / 3600);
    const minutes = Math.floor((total % 3600) / 60);
    const seconds = total % 60;
    if (hours) return hours + " h " + two(minutes) + " min " + two(seconds) + " s";
    if (minutes) return minutes + " min " + two(seconds) + " s";
    return seconds + " s";
  }

  // The server's clock decides expiry; correct for a browser clock that is off. The build
  // page carries the server's time in data-now, which build.js renews from each state.json.
  let skew = 0;
  let serverNow = "";

  function tickCountdowns() {
    const build = document.getElementById("build");
    if (build && build.dataset.now && build.dataset.now !== serverNow) {
      serverNow = build.dataset.now;
      const at = Date.parse(serverNow);
      if (Number.isFinite(at)) skew = at - Date.now();
    }
    for (const node of document.querySelectorAll("[data-countdown]")) {
      const at = Date.parse(node.dataset.expires || "");
      if (!Number.isFinite(at)) {
        node.textContent = "";
        continue;
      }
      const left = at - (Date.now() + skew);
      node.textContent = left > 0 ? "(" + formatLeft(left) + " left)" : "(expired: the builder is being removed)";
      node.classList.toggle("soon", left > 0 && left < 10 * 60 * 1000);
      node.classList.toggle("over", left <= 0);
    }
  }

  // On the whole document: build.js puts in SSH panels that were not there when the page loaded.
  function setUpPanels() {
    document.addEventListener("click", function (event) {
      const button = event.target instanceof Element && event.target.closest("[data-copy]");
      if (button) copy(button);
    });
    document.addEventListener("submit", function (event) {
      const form = event.target instanceof Element && event.target.closest("form[data-confirm]");
      if (form && !window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  }

  // --- a part shown only while its checkbox is ticked ("keep the builder if it fails") ---

  function setUpShownBy(part) {
    const box = document.getElementById(part.dataset.shownBy);
    if (!box) return;
    function update() {
      part.hidden = !box.checked;
    }
    box.addEventListener("change", update);
    update();
  }

  function start() {
    for (const part of document.querySelectorAll("[data-shown-by]")) setUpShownBy(part);
    const textarea = document.getElementById("id_ssh_public_keys");
    const box = document.getElementById("key-preview");
    if (textarea && box && window.fetch) setUpKeyPreview(textarea, box);

    setUpPanels();
    // A build page may get its first panel later (build.js): count down there from the start.
    if (document.getElementById("build") || document.querySelector("[data-countdown]")) {
      tickCountdowns();
      window.setInterval(tickCountdowns, 1000);
    }
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
