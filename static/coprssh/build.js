/* coprssh build pages: the source switch of the new-build form, and live logs and states
 * on the build page, with the SSH builder panel of an SSH build. Plain JavaScript, no framework. The pages work without it: the server
 * decides by the chosen source type, and the raw logs are links.
 *
 * Build output is untrusted: it only ever reaches the page as text (Text nodes and
 * textContent), never as HTML.
 */
(function () {
  "use strict";

  // --- the new-build form: show only the chosen source ------------------------------

  function setUpSourceSwitch(form) {
    const sets = Array.from(form.querySelectorAll("fieldset[data-source]"));
    function update() {
      for (const set of sets) {
        const radio = set.querySelector('input[name="source_type"]');
        const chosen = Boolean(radio && radio.checked);
        // The radio sits in the fieldset's first legend, so it stays usable while the
        // rest is disabled; disabled fields are not sent (no needless upload).
        set.disabled = !chosen;
        set.classList.toggle("collapsed", !chosen);
      }
    }
    for (const set of sets) {
      const radio = set.querySelector('input[name="source_type"]');
      if (radio) radio.addEventListener("change", update);
    }
    update();
  }

  // --- the build page: live logs and states -------------------------------------------

  const POLL_MS = 2000;
  const SSH_POLL_MS = 10000; // the build is over but an SSH builder lives on: its expiry may move
  const MAX_POLL_MS = 30000;
  const TAIL_BYTES = 256 * 1024; // of a long log, start with its end
  const KEEP_CHARS = 2 * 1024 * 1024; // what a <pre> keeps before dropping its start
  const DRAIN_BYTES = 64 * 1024; // a chunk this big suggests more is waiting
  const FINAL_READS = 2; // reads after a phase ends, for the last lines of backend.log

  class LogView {
    constructor(details, card) {
      this.details = details;
      this.card = card;
      this.url = details.dataset.logUrl;
      this.name = details.dataset.log;
      this.pre = details.querySelector("pre");
      this.note = details.querySelector(".log-note");
      this.text = document.createTextNode("");
      this.pre.appendChild(this.text);
      this.decoder = new TextDecoder("utf-8");
      this.offset = null;
      this.partialLine = false;
      this.busy = false;
      this.finalReads = FINAL_READS;
    }

    get done() {
      return this.finalReads <= 0;
    }

    say(message) {
      this.note.textContent = message;
      this.note.hidden = false;
    }

    atBottom() {
      const pre = this.pre;
      return pre.scrollHeight - pre.scrollTop - pre.clientHeight < 8;
    }

    append(chunk) {
      if (!chunk) return;
      const follow = this.atBottom();
      this.text.appendData(chunk);
      if (this.text.length > KEEP_CHARS) {
        this.text.deleteData(0, this.text.length - KEEP_CHARS / 2);
        this.say("Earlier output is not shown here; open the raw log for all of it.");
      }
      if (follow) this.pre.scrollTop = this.pre.scrollHeight;
    }

    // Read what was added since the last read; `phase` is the latest state.json entry.
    async read(phase) {
      if (this.busy || this.done) return;
      this.busy = true;
      const finished = Boolean(phase && phase.finished);
      try {
        if (this.offset === null) {
          const size = (phase && phase.log_sizes && phase.log_sizes[this.name]) || 0;
          this.offset = size > TAIL_BYTES ? size - TAIL_BYTES : 0;
          if (this.offset > 0) {
            this.partialLine = true;
            this.say("The log is long: only its last " + TAIL_BYTES / 1024 + " KiB are shown; open the raw log for all of it.");
          }
        }
        for (;;) {
          const response = await fetch(this.url + "?offset=" + this.offset, {
            credentials: "same-origin",
            cache: "no-store",
          });
          if (!response.ok) throw new Error(this.name + ": HTTP " + response.status);
          const bytes = new Uint8Array(await response.arrayBuffer());
          const size = Number(response.headers.get("X-Log-Size"));
          this.offset = Number.isFinite(size) && size >= this.offset ? size : this.offset + bytes.length;
          // stream: a character split between two reads is completed by the next one.
          let chunk = this.decoder.decode(bytes, { stream: true });
          if (this.partialLine && chunk) {
            // Reading from the middle of a log: start at the next whole line.
            const newline = chunk.indexOf("\n");
            this.partialLine = newline < 0;
            chunk = newline < 0 ? "" : chunk.slice(newline + 1);
          }
          this.append(chunk);
          if (bytes.length < DRAIN_BYTES) break;
        }
        if (finished) this.finalReads -= 1;
      } finally {
        this.busy = false;
      }
    }
  }

  function setBadge(badge, state) {
    if (!badge || !state) return;
    badge.textContent = state;
    badge.className = "state state-" + state;
  }

  function setText(root, field, value) {
    const element = root.querySelector('[data-field="' + field + '"]');
    if (element) element.textContent = value || "—";
  }

  function setResults(card, results) {
    const cell = card.querySelector('[data-field="results"]');
    if (!cell || !results) return;
    if (cell.dataset.count === String(results.length)) return;
    cell.dataset.count = String(results.length);
    cell.replaceChildren();
    if (!results.length) {
      const none = document.createElement("span");
      none.className = "muted";
      none.textContent = "none yet";
      cell.appendChild(none);
      return;
    }
    const list = document.createElement("ul");
    list.className = "results";
    for (const result of results) {
      const item = document.createElement("li");
      const link = document.createElement("a");
      link.href = result.url;
      link.textContent = result.name;
      const size = document.createElement("span");
      size.className = "muted";
      size.textContent = " " + formatSize(result.size);
      item.append(link, size);
      list.appendChild(item);
    }
    cell.appendChild(list);
  }

  function formatSize(bytes) {
    if (bytes >= 1 << 20) return (bytes / (1 << 20)).toFixed(1) + " MB";
    if (bytes >= 1 << 10) return (bytes / (1 << 10)).toFixed(1) + " KB";
    return bytes + " bytes";
  }

  // --- the SSH builder panel of a phase ------------------------------------------------

  const SSH_LIVE = ["queued", "provisioning", "ready"];
  const SSH_TEXT = [
    "queue_reason", "ssh_command", "host", "port", "user", "ipv4", "ipv6", "host_key_fingerprint",
    "expires_at_display", "max_expires_at_display", "end", "other_command", "gateway_host_key_fingerprint",
    "ssh_config", "known_hosts", "last_gateway_login",
  ];

  function setSsh(panel, ssh) {
    panel.dataset.sshState = ssh.state;
    setBadge(panel.querySelector('[data-ssh-field="state"]'), ssh.state);
    for (const name of SSH_TEXT) {
      const node = panel.querySelector('[data-ssh-field="' + name + '"]');
      if (!node) continue;
      const value = ssh[name] === null || ssh[name] === undefined ? "" : String(ssh[name]);
      // The command is copied as it is; other empty values show a dash.
      node.textContent = value || (name === "ssh_command" || name === "queue_reason" ? "" : "—");
    }
    const login = panel.querySelector('[data-ssh-field="last_gateway_login_line"]');
    if (login) login.hidden = !ssh.last_gateway_login;
    const reason = panel.querySelector('[data-ssh-field="queue_reason"]');
    if (reason) reason.hidden = !ssh.queue_reason || !["queued", "provisioning"].includes(ssh.state);
    const keys = panel.querySelector('[data-ssh-field="key_fingerprints"]');
    if (keys && keys.dataset.shown !== (ssh.key_fingerprints || []).join(" ")) {
      keys.dataset.shown = (ssh.key_fingerprints || []).join(" ");
      keys.replaceChildren();
      for (const fingerprint of ssh.key_fingerprints || []) {
        const item = document.createElement("li");
        item.className = "mono";
        item.textContent = fingerprint;
        keys.appendChild(item);
      }
    }
    const countdown = panel.querySelector("[data-countdown]");
    if (countdown) countdown.dataset.expires = ssh.expires_at || ""; // ssh.js counts down from it
    for (const part of panel.querySelectorAll("[data-ssh-show]")) {
      part.hidden = !part.dataset.sshShow.split(" ").includes(ssh.state);
    }
  }

  // The parts of a phase card that the server makes from its SSH builder: the panel, and the
  // notes of a keep-on-failure build on what became of the builder. What they show depends on
  // more than state.json says (the way in, the gateway, ~/.ssh/config), so when they change in
  // substance they are taken whole from a fresh copy of this page, which the browser parses
  // and never runs. The copy comes from our own server, like the page itself.
  const SSH_PARTS = ":scope > [data-ssh], :scope > .kept-note, :scope > .not-kept";

  async function freshSshParts(cards, keys) {
    const response = await fetch(window.location.href, {
      credentials: "same-origin",
      cache: "no-store",
      headers: { Accept: "text/html" },
    });
    if (!response.ok) throw new Error("page: HTTP " + response.status);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const freshCards = new Map();
    for (const card of fresh.querySelectorAll("section.phase[data-phase]")) {
      freshCards.set(card.dataset.phase, card);
    }
    for (const key of keys) {
      const card = cards.get(key);
      const freshCard = freshCards.get(key);
      if (!card || !freshCard) continue;
      for (const part of card.querySelectorAll(SSH_PARTS)) part.remove();
      const before = card.querySelector(":scope > details.log");
      for (const part of freshCard.querySelectorAll(SSH_PARTS)) {
        card.insertBefore(document.adoptNode(part), before);
      }
    }
  }

  function setUpBuildPage(root) {
    const stateUrl = root.dataset.stateUrl;
    const cards = new Map();
    const logs = [];
    let phases = new Map(); // key -> latest state.json entry
    let loaded = false;
    let finished = false;
    let sshLive = false; // some SSH builder of this build is still queued, coming or ready
    let sshComing = false; // some SSH builder is being prepared: its user waits to log in
    let delay = POLL_MS;
    let timer = null;
    const refreshed = new Set(); // changes of SSH parts already taken from a fresh page

    for (const card of root.querySelectorAll("section.phase[data-phase]")) {
      cards.set(card.dataset.phase, card);
      const cardFinished = card.dataset.finished === "true";
      const failed = card.querySelector('[data-field="state"]').textContent.trim() === "failed";
      for (const details of card.querySelectorAll("details.log")) {
        const view = new LogView(details, card);
        logs.push(view);
        details.hidden = false;
        // Follow the build output of what runs, and show it for what failed.
        if (view.name === "builder-live.log" && (!cardFinished || failed)) details.open = true;
        details.addEventListener("toggle", function () {
          // Before the first state arrives, the first tick reads every open log itself.
          if (details.open && loaded) view.read(phases.get(card.dataset.phase)).catch(report);
        });
      }
    }

    function report(error) {
      if (window.console) console.warn("coprssh live log:", error);
    }

    function apply(data) {
      const stale = new Map(); // phase key -> what changed, for the phases to refresh from the server
      finished = Boolean(data.finished);
      root.dataset.finished = String(finished);
      if (data.now) root.dataset.now = data.now;
      sshLive = false;
      sshComing = false;
      setBadge(root.querySelector('[data-field="build-state"]'), data.state);
      if (data.package) setText(root, "package", data.package);
      setText(root, "build-started", data.started_at);
      setText(root, "build-ended", data.ended_at);
      for (const element of root.querySelectorAll("[data-show]")) {
        element.hidden = (element.dataset.show === "finished") !== finished;
      }
      phases = new Map();
      for (const phase of data.phases || []) {
        phases.set(phase.key, phase);
        const card = cards.get(phase.key);
        if (!card) continue; // a chroot the page does not know: ignore it
        card.dataset.finished = String(Boolean(phase.finished));
        setBadge(card.querySelector('[data-field="state"]'), phase.state);
        const reason = card.querySelector('[data-field="reason"]');
        if (reason) reason.textContent = phase.status_reason || "";
        setText(card, "started", phase.started_at);
        setText(card, "ended", phase.ended_at);
        setText(card, "duration", phase.duration);
        setResults(card, phase.results);
        const panel = card.querySelector("[data-ssh]");
        const wasReady = Boolean(panel) && panel.dataset.sshState === "ready";
        if (panel && phase.ssh) setSsh(panel, phase.ssh);
        // Made again by the server: a panel that appeared after the page was made (a failed
        // phase of a keep-on-failure build got its SSH builder), one that just became ready
        // (how to log in), and the reason a failed phase's builder was not kept.
        const refused = phase.not_kept_reason && !card.querySelector('[data-field="not_kept_reason"]');
        const appeared = phase.ssh && (!panel || panel.dataset.lease !== String(phase.ssh.lease_id));
        const ready = panel && phase.ssh && phase.ssh.state === "ready" && !wasReady;
        if (appeared || ready || refused) {
          const why = phase.key + ":" + (phase.ssh ? phase.ssh.lease_id + ":" + phase.ssh.state : "not kept");
          if (!refreshed.has(why)) stale.set(phase.key, why);
        }
        if (phase.ssh && SSH_LIVE.includes(phase.ssh.state)) sshLive = true;
        if (phase.ssh && phase.ssh.state === "provisioning") sshComing = true;
      }
      return stale;
    }

    // Once per phase and change, so that a page and a state that disagree cannot loop.
    async function refreshSsh(stale) {
      for (const why of stale.values()) refreshed.add(why);
      try {
        await freshSshParts(cards, Array.from(stale.keys()));
      } catch (error) {
        for (const why of stale.values()) refreshed.delete(why); // try again at the next tick
        throw error;
      }
    }

    async function tick() {
      timer = null;
      try {
        const response = await fetch(stateUrl, { credentials: "same-origin", cache: "no-store" });
        if (!response.ok) throw new Error("state: HTTP " + response.status);
        const stale = apply(await response.json());
        loaded = true;
        if (stale.size) await refreshSsh(stale);
        await Promise.all(
          logs
            .filter((view) => view.details.open)
            .map((view) => view.read(phases.get(view.card.dataset.phase)))
        );
        delay = POLL_MS;
      } catch (error) {
        report(error);
        delay = Math.min(delay * 2, MAX_POLL_MS); // the server is away: ask less often
      }
      const reading = logs.some((view) => view.details.open && !view.done);
      if (!finished || reading || sshComing) timer = window.setTimeout(tick, delay);
      else if (sshLive) timer = window.setTimeout(tick, Math.max(delay, SSH_POLL_MS));
    }

    tick();
  }

  function start() {
    const form = document.getElementById("build-form");
    if (form) setUpSourceSwitch(form);
    const build = document.getElementById("build");
    if (build && window.fetch && window.TextDecoder) setUpBuildPage(build);
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
