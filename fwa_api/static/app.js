// The chat page: sessions sidebar, streamed answers, confidence dots, case and rule links.
// No framework and no build step; everything is built with DOM calls (never innerHTML), so the
// page runs under a CSP without 'unsafe-inline' and model output can never inject markup.
// Signing in exchanges the token once for an HttpOnly session cookie; the page never keeps the
// token, only the session's CSRF token (in memory), which every write sends back.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const state = { csrf: "", workspace: "", session: null, connected: false, busy: false };
  const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
  const CONFIDENCE = { high: "answered from data", medium: "model with data", low: "no data or fallback" };

  // ------------------------------------------------------------------ API

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  function headers(method, json) {
    const h = {};
    if (UNSAFE.has(method)) h["X-CSRF-Token"] = state.csrf;
    if (json) h["Content-Type"] = "application/json";
    return h;
  }

  function url(path, withWorkspace = true) {
    if (!withWorkspace) return path;
    return `${path}?workspace=${encodeURIComponent(state.workspace)}`;
  }

  async function api(method, path, body, withWorkspace = true) {
    const response = await fetch(url(path, withWorkspace), {
      method,
      headers: headers(method, body !== undefined),
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    if (response.status === 204) return null;
    const data = await response.json().catch(() => ({}));
    if (!response.ok) {
      const detail = typeof data.detail === "string" ? data.detail : `HTTP ${response.status}`;
      throw new ApiError(response.status, detail);
    }
    return data;
  }

  // Reads Server-Sent Events from a POST (EventSource cannot send a body or a token).
  async function stream(path, body, onEvent) {
    const response = await fetch(url(path), {
      method: "POST",
      headers: headers("POST", true),
      body: JSON.stringify(body),
    });
    if (!response.ok) {
      const data = await response.json().catch(() => ({}));
      throw new ApiError(response.status, data.detail || `HTTP ${response.status}`);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true }).replace(/\r\n/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const data = block
          .split("\n")
          .filter((line) => line.startsWith("data:"))
          .map((line) => line.slice(5).replace(/^ /, ""))
          .join("\n");
        if (data) onEvent(JSON.parse(data));
      }
    }
  }

  // ------------------------------------------------------------------ markdown (a safe subset)

  const ENTITY_LINK = /^\/(cases|rules)\/([A-Z0-9-]{1,40})$/;

  function inline(parent, text) {
    // Links, bold, italics and code; anything else is text.
    const pattern =
      /\[([^\]\n]+)\]\(([^)\s]+)\)|\*\*([^*]+)\*\*|`([^`]+)`|(?<![A-Za-z0-9])_([^_\n]+)_(?![A-Za-z0-9])/g;
    let last = 0;
    for (const match of text.matchAll(pattern)) {
      parent.append(text.slice(last, match.index));
      last = match.index + match[0].length;
      if (match[1] !== undefined) {
        const target = ENTITY_LINK.exec(match[2]);
        if (!target) {
          parent.append(match[1]); // only links to cases and rules are followed
          continue;
        }
        const a = document.createElement("a");
        a.href = match[2];
        a.textContent = match[1];
        a.className = "entity";
        a.dataset.kind = target[1];
        a.dataset.entity = target[2];
        parent.append(a);
      } else {
        const tag = match[3] !== undefined ? "strong" : match[4] !== undefined ? "code" : "em";
        const el = document.createElement(tag);
        inline(el, match[3] ?? match[4] ?? match[5]);
        parent.append(el);
      }
    }
    parent.append(text.slice(last));
  }

  function tableRow(line, cellTag) {
    const tr = document.createElement("tr");
    for (const cell of line.trim().replace(/^\||\|$/g, "").split("|")) {
      const td = document.createElement(cellTag);
      inline(td, cell.trim());
      tr.append(td);
    }
    return tr;
  }

  function renderMarkdown(text) {
    const root = document.createDocumentFragment();
    const lines = text.split("\n");
    let i = 0;
    while (i < lines.length) {
      const line = lines[i];
      if (!line.trim()) {
        i += 1;
      } else if (line.trim().startsWith("|")) {
        const table = document.createElement("table");
        const rows = [];
        while (i < lines.length && lines[i].trim().startsWith("|")) rows.push(lines[i++]);
        const separator = rows.length > 1 && /^\|?[\s:|-]+\|?$/.test(rows[1].trim());
        const thead = document.createElement("thead");
        const tbody = document.createElement("tbody");
        rows.forEach((row, index) => {
          if (separator && index === 1) return;
          if (separator && index === 0) thead.append(tableRow(row, "th"));
          else tbody.append(tableRow(row, "td"));
        });
        table.append(thead, tbody);
        root.append(table);
      } else if (/^\s*[-*] /.test(line)) {
        const ul = document.createElement("ul");
        while (i < lines.length && /^\s*[-*] /.test(lines[i])) {
          const li = document.createElement("li");
          inline(li, lines[i++].replace(/^\s*[-*] /, ""));
          ul.append(li);
        }
        root.append(ul);
      } else {
        const p = document.createElement("p");
        const parts = [];
        while (i < lines.length && lines[i].trim() && !/^\s*([-*] |\|)/.test(lines[i])) {
          parts.push(lines[i++]);
        }
        parts.forEach((part, index) => {
          if (index) p.append(document.createElement("br"));
          inline(p, part);
        });
        root.append(p);
      }
    }
    return root;
  }

  // ------------------------------------------------------------------ messages

  function bubble(role) {
    const item = document.createElement("article");
    item.className = `message ${role}`;
    const body = document.createElement("div");
    body.className = "body";
    item.append(body);
    $("messages").append(item);
    item.scrollIntoView({ block: "end" });
    return item;
  }

  function showAnswer(item, answer) {
    const body = item.querySelector(".body");
    body.replaceChildren(renderMarkdown(answer.content));
    item.classList.remove("streaming");
    const meta = document.createElement("footer");
    meta.className = "meta";
    if (answer.confidence) {
      const dot = document.createElement("span");
      dot.className = `dot ${answer.confidence}`;
      dot.title = `Confidence: ${answer.confidence} (${CONFIDENCE[answer.confidence] || ""})`;
      dot.setAttribute("aria-label", dot.title);
      meta.append(dot, ` ${answer.confidence}`);
    }
    if (answer.model_used) meta.append(` · ${answer.model_used}`);
    const sources = (answer.sources_cited || []).map((s) => `${s.type} ${s.id}`);
    if (sources.length) {
      const details = document.createElement("details");
      const summary = document.createElement("summary");
      summary.textContent = `${sources.length} source${sources.length === 1 ? "" : "s"}`;
      details.append(summary, sources.join(", "));
      meta.append(" · ", details);
    }
    item.append(meta);
  }

  function showUser(text) {
    bubble("user").querySelector(".body").textContent = text;
  }

  function toolLine(item, event) {
    const tools = item.querySelector(".tools") || item.insertBefore(
      Object.assign(document.createElement("ul"), { className: "tools" }),
      item.firstChild,
    );
    if (event.type === "tool_call") {
      const li = document.createElement("li");
      li.textContent = `${event.tool}(${JSON.stringify(event.arguments)})`;
      tools.append(li);
    } else if (tools.lastChild) {
      tools.lastChild.classList.add(event.ok ? "ok" : "failed");
    }
  }

  async function send(text) {
    if (!state.session) await newSession();
    showUser(text);
    const item = bubble("assistant");
    item.classList.add("streaming");
    const body = item.querySelector(".body");
    const live = document.createTextNode("");
    body.append(live);
    await stream("/api/agents/chat/stream", { message: text, session_id: state.session }, (event) => {
      if (event.type === "token") {
        live.appendData(event.token);
        item.scrollIntoView({ block: "end" });
      } else if (event.type === "tool_call" || event.type === "tool_result") {
        toolLine(item, event);
      } else if (event.type === "final") {
        showAnswer(item, { ...event, content: event.response });
      } else if (event.type === "error") {
        showAnswer(item, { content: "Something went wrong; please try again.", confidence: "low" });
      }
    });
    await loadSessions();
  }

  // ------------------------------------------------------------------ sessions

  async function loadSessions() {
    const { sessions } = await api("GET", "/api/agents/sessions");
    const list = $("sessions");
    list.replaceChildren();
    for (const s of sessions) {
      const li = document.createElement("li");
      li.dataset.session = s.session_id;
      li.classList.toggle("active", s.session_id === state.session);
      const open = document.createElement("button");
      open.type = "button";
      open.className = "open";
      open.textContent = s.title || "New chat";
      open.title = s.case_id ? `Pinned to ${s.case_id}` : new Date(s.updated_at).toLocaleString();
      open.addEventListener("click", () => guarded(() => openSession(s.session_id)));
      const remove = document.createElement("button");
      remove.type = "button";
      remove.className = "delete";
      remove.textContent = "×";
      remove.setAttribute("aria-label", `Delete ${s.title || "chat"}`);
      remove.addEventListener("click", () => guarded(() => deleteSession(s.session_id)));
      li.append(open, remove);
      list.append(li);
    }
  }

  async function openSession(id) {
    const session = await api("GET", `/api/agents/sessions/${id}`);
    state.session = id;
    $("messages").replaceChildren();
    for (const m of session.messages) {
      if (m.role === "user") showUser(m.content);
      else showAnswer(bubble("assistant"), m);
    }
    await loadSessions();
  }

  async function newSession() {
    const session = await api("POST", "/api/agents/sessions", {});
    state.session = session.session_id;
    $("messages").replaceChildren();
    await loadSessions();
  }

  async function deleteSession(id) {
    await api("DELETE", `/api/agents/sessions/${id}`);
    if (state.session === id) {
      state.session = null;
      $("messages").replaceChildren();
    }
    await loadSessions();
  }

  // ------------------------------------------------------------------ details panel

  // A case or rule opens from the API's own routes (GET /api/cases/{id}, /api/rules/{id}),
  // the same records an investigator works with, not a chat answer.
  const money = (n) => n.toLocaleString("en-US", { style: "currency", currency: "USD" });

  function field(list, label, value) {
    list.append(
      Object.assign(document.createElement("dt"), { textContent: label }),
      Object.assign(document.createElement("dd"), { textContent: value }),
    );
  }

  function section(title, items) {
    const h = Object.assign(document.createElement("h3"), { textContent: title });
    const ul = document.createElement("ul");
    for (const text of items) ul.append(Object.assign(document.createElement("li"), { textContent: text }));
    return [h, ul];
  }

  function caseView(c) {
    const facts = document.createElement("dl");
    field(facts, "Subject", `${c.subject_type} ${c.subject_id}`);
    field(facts, "Risk", `${c.risk_score} (${c.risk_level})`);
    field(facts, "Status", c.status + (c.assignee ? `, assigned to ${c.assignee}` : ""));
    field(facts, "Flagged", `${money(c.flagged_billed)} billed, ${money(c.flagged_paid)} paid`);
    field(facts, "Claims", String(c.claim_count));
    const rules = c.rules.map((r) => `${r.rule_id} ${r.name ?? ""}: ${r.hits} hit(s)`);
    const history = c.history.slice(-5).map((e) => `${new Date(e.at).toLocaleString()} ${e.actor}: ${e.action}`);
    return [facts, ...section("Rules hit", rules), ...section("Latest history", history)];
  }

  function ruleView(r) {
    const facts = document.createElement("dl");
    field(facts, "Name", r.name);
    field(facts, "Family", `${r.family}, version ${r.version}`);
    field(facts, "Weight", `${r.weight} (cap ${r.cap})${r.enabled ? "" : ", disabled"}`);
    field(facts, "Hits here", `${r.hits} on ${r.claims_hit} claim(s)`);
    return [facts];
  }

  async function showEntity(kind, id) {
    const panel = $("detail");
    const body = $("detail-body");
    body.replaceChildren(Object.assign(document.createElement("p"), { textContent: `Loading ${id}…` }));
    panel.hidden = false;
    const record = await api("GET", `/api/${kind}/${encodeURIComponent(id)}`);
    const heading = Object.assign(document.createElement("h2"), { textContent: id });
    body.replaceChildren(heading, ...(kind === "cases" ? caseView(record) : ruleView(record)));
  }

  // ------------------------------------------------------------------ wiring

  function notice(text) {
    $("notice").textContent = text;
    $("notice").hidden = !text;
  }

  // While a request runs, the buttons wait; typing the next question does not.
  function updateControls() {
    $("message").disabled = !state.connected;
    for (const id of ["new-session", "send", "connect-button", "sign-out"]) {
      $(id).disabled = state.busy || (!["connect-button", "sign-out"].includes(id) && !state.connected);
    }
  }

  // The only request that carries the token: it comes back as the session cookie.
  async function signIn() {
    const response = await fetch("/api/session", {
      method: "POST",
      headers: { Authorization: `Bearer ${$("token").value.trim()}` },
    });
    $("token").value = "";
    const data = await response.json().catch(() => ({}));
    if (!response.ok) throw new ApiError(response.status, data.detail || `HTTP ${response.status}`);
    await connect(data);
  }

  async function signOut() {
    try {
      await api("DELETE", "/api/session", undefined, false);
    } catch (error) {
      if (error.status !== 401) throw error; // 401: the session had ended already
    }
    signedOut("Signed out.");
  }

  // The page without a session: the sign-in form, nothing else.
  function signedOut(message) {
    Object.assign(state, { csrf: "", workspace: "", session: null, connected: false });
    $("connect").hidden = false;
    $("account").hidden = true;
    $("workspace").replaceChildren();
    $("workspace").disabled = true;
    for (const id of ["sessions", "messages", "detail-body"]) $(id).replaceChildren();
    $("detail").hidden = true;
    $("model-status").textContent = "";
    notice(message);
  }

  async function connect(session) {
    state.csrf = session.csrf_token;
    $("who").textContent = `Signed in as ${session.name} (${session.role})`;
    $("connect").hidden = true;
    $("account").hidden = false;
    const { workspaces } = await api("GET", "/api/workspaces", undefined, false);
    if (!workspaces.length) throw new ApiError(404, "this token has no workspace with data yet");
    const select = $("workspace");
    const previous = state.workspace || sessionStorage.getItem("fwa-workspace");
    select.replaceChildren(...workspaces.map((w) => new Option(w.name, w.name)));
    if (workspaces.some((w) => w.name === previous)) select.value = previous;
    select.disabled = false;
    await useWorkspace(select.value);
    const status = await api("GET", "/api/agents/status", undefined, false).catch(() => null);
    $("model-status").textContent = status
      ? `${status.model}: ${status.reachable ? (status.loaded === false ? "not loaded" : "ready") : "unavailable"}`
      : "";
  }

  async function useWorkspace(name) {
    state.workspace = name;
    state.session = null;
    sessionStorage.setItem("fwa-workspace", name);
    $("messages").replaceChildren();
    await loadSessions();
    state.connected = true;
    notice("");
  }

  async function guarded(action) {
    if (state.busy) return;
    state.busy = true;
    updateControls();
    try {
      await action();
    } catch (error) {
      if (error.status === 401 && state.connected) signedOut("Your session has ended; sign in again.");
      else notice(error.status === 401 ? "The token was not accepted." : `Error: ${error.message}`);
    } finally {
      state.busy = false;
      updateControls();
    }
  }

  $("connect").addEventListener("submit", (event) => {
    event.preventDefault();
    guarded(signIn);
  });
  $("sign-out").addEventListener("click", () => guarded(signOut));
  $("workspace").addEventListener("change", (event) => guarded(() => useWorkspace(event.target.value)));
  $("new-session").addEventListener("click", () => guarded(newSession));
  $("composer").addEventListener("submit", (event) => {
    event.preventDefault();
    const text = $("message").value.trim();
    if (!text) return;
    $("message").value = "";
    guarded(() => send(text));
  });
  $("message").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("composer").requestSubmit();
    }
  });
  // Case and rule links, in answers and in the details panel, open beside the chat.
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.entity");
    if (!link) return;
    event.preventDefault();
    showEntity(link.dataset.kind, link.dataset.entity).catch((error) => notice(`Error: ${error.message}`));
  });
  $("close-detail").addEventListener("click", () => {
    $("detail").hidden = true;
  });

  // A reloaded page picks up its session from the cookie (401 without one: the form stays).
  guarded(async () => {
    const response = await fetch("/api/session");
    if (response.ok) await connect(await response.json());
  });
})();
