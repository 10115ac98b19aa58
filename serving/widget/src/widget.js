// The helpdesk widget: a launcher bubble (or an inline panel) in a Shadow DOM, streaming cited
// answers from the service. No HTML from the model or the documents is ever parsed.
import { Api, ApiError } from "./api.js";
import { thumb } from "./icons.js";
import { renderMarkdown } from "./markdown.js";
import { fmt, stringsFor } from "./strings.js";
import CSS from "./styles.css";

const ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';
const FOCUSABLE = 'button:not([disabled]), textarea, input, a[href], [tabindex]:not([tabindex="-1"])';

function h(doc, tag, attrs, ...children) {
  const node = doc.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children) if (c) node.appendChild(typeof c === "string" ? doc.createTextNode(c) : c);
  return node;
}

function newId() {
  if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  const bytes = new Uint8Array(16);
  crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function safeColor(value) {
  return /^(#[0-9a-f]{3,8}|rgb\([\d\s,.%]+\)|[a-z]{3,20})$/i.test(String(value || "")) ? value : null;
}

/** Wrap each unsupported sentence found inside a single text node of `root`. */
function markUnsupported(doc, root, sentences, label) {
  for (const sentence of sentences) {
    const needle = String(sentence).trim();
    if (needle.length < 4) continue;
    const walker = doc.createTreeWalker(root, 4 /* NodeFilter.SHOW_TEXT */);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const at = node.data.indexOf(needle);
      if (at < 0) continue;
      const rest = node.splitText(at);
      rest.splitText(needle.length);
      const span = h(doc, "span", { class: "kbw-unsupported", title: label });
      rest.parentNode.replaceChild(span, rest);
      span.appendChild(rest);
      break;
    }
  }
}

export class Widget {
  constructor(opts) {
    this.opts = opts;
    this.t = stringsFor(opts.lang);
    this.api = new Api(opts.base, opts.token, opts.identity);
    this.key = `kbw:${opts.token}:${opts.mode}`;
    this.state = this.load();
    this.busy = null;
    this.doc = document;
  }

  load() {
    try {
      const saved = JSON.parse(sessionStorage.getItem(this.key) || "null");
      if (saved && Array.isArray(saved.messages)) return saved;
    } catch (_) { /* storage unavailable or corrupt: start fresh */ }
    return { conversationId: null, messages: [], open: false };
  }

  save() {
    try { sessionStorage.setItem(this.key, JSON.stringify(this.state)); } catch (_) { /* full or disabled */ }
  }

  mount() {
    const doc = this.doc;
    const o = this.opts;
    const inline = o.mode === "inline";
    this.host = h(doc, "kb-helpdesk-widget", { "data-kb-widget": "" });
    this.host.style.cssText = "all: initial !important; display: block !important;";
    if (inline) {
      const target = typeof o.target === "string" ? doc.querySelector(o.target) : o.target;
      if (!target) throw new Error(`kb-widget: inline target ${o.target} not found`);
      target.appendChild(this.host);
    } else {
      doc.body.appendChild(this.host);
    }
    const root = this.host.attachShadow({ mode: "open" });
    this.root = root;
    const style = h(doc, "style", { text: CSS });
    root.appendChild(style);
    const color = safeColor(o.color);
    if (color) this.host.style.setProperty("--kbw-primary", color);
    const t = this.t;
    const wrap = h(doc, "div", { class: `kbw ${o.position === "left" ? "kbw-left" : "kbw-right"}`, lang: o.lang || "en" });
    root.appendChild(wrap);
    this.wrap = wrap;
    const titleId = "kbw-title";
    this.log = h(doc, "div", { class: "kbw-log", role: "log", "aria-live": "polite", "aria-label": t.title });
    this.input = h(doc, "textarea", { rows: 1, placeholder: t.placeholder, "aria-label": t.placeholder, maxlength: 4000 });
    this.sendBtn = h(doc, "button", { type: "submit", text: t.send });
    const form = h(doc, "form", { class: "kbw-form", onsubmit: (e) => { e.preventDefault(); this.ask(this.input.value); } },
      this.input, this.sendBtn);
    this.input.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); this.ask(this.input.value); }
    });
    this.viewer = h(doc, "div", { class: "kbw-viewer", hidden: true, role: "region", "aria-label": t.source });
    const head = h(doc, "div", { class: "kbw-head" },
      h(doc, "h2", { id: titleId, text: o.title || t.title }),
      h(doc, "button", { type: "button", class: "kbw-new", text: t.newChat, onclick: () => this.reset() }),
      inline ? null : h(doc, "button", { type: "button", class: "kbw-close", "aria-label": t.close, text: "✕", onclick: () => this.close() }));
    this.panel = h(doc, "div", {
      class: `kbw-panel ${inline ? "kbw-inline" : "kbw-floating"}`,
      role: inline ? "region" : "dialog", "aria-modal": inline ? null : "true", "aria-labelledby": titleId,
      hidden: !inline,
    }, head, this.log, this.viewer, form);
    this.panel.addEventListener("keydown", (e) => this.onKey(e));
    if (!inline) {
      this.launcher = h(doc, "button", { type: "button", class: "kbw-launcher", "aria-label": t.open, "aria-expanded": "false",
        "aria-haspopup": "dialog", onclick: () => (this.panel.hidden ? this.open() : this.close()) });
      this.launcher.innerHTML = ICON; // a constant of this file, never user data
      wrap.appendChild(this.launcher);
    }
    wrap.appendChild(this.panel);
    this.render();
    if (!inline && this.state.open) this.open(false);
    return this;
  }

  open(focus = true) {
    this.panel.hidden = false;
    this.wrap.classList.add("kbw-open");
    if (this.launcher) this.launcher.setAttribute("aria-expanded", "true");
    this.state.open = true;
    this.save();
    this.scroll();
    if (focus) this.input.focus();
  }

  close() {
    if (this.opts.mode === "inline") return;
    this.panel.hidden = true;
    this.wrap.classList.remove("kbw-open");
    this.launcher.setAttribute("aria-expanded", "false");
    this.state.open = false;
    this.save();
    this.launcher.focus();
  }

  onKey(e) {
    if (e.key === "Escape") {
      if (!this.viewer.hidden) { this.showLog(); e.stopPropagation(); return; }
      this.close();
      return;
    }
    if (e.key !== "Tab" || this.opts.mode === "inline") return;
    const items = [...this.panel.querySelectorAll(FOCUSABLE)].filter((n) => !n.closest("[hidden]"));
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    const active = this.root.activeElement;
    if (e.shiftKey && (active === first || !this.panel.contains(active))) { e.preventDefault(); last.focus(); }
    else if (!e.shiftKey && (active === last || !this.panel.contains(active))) { e.preventDefault(); first.focus(); }
  }

  reset() {
    if (this.busy) this.busy.abort();
    this.state = { conversationId: null, messages: [], open: this.state.open };
    this.save();
    this.showLog();
    this.render();
    this.input.focus();
  }

  scroll() { this.log.scrollTop = this.log.scrollHeight; }

  render() {
    const doc = this.doc;
    const t = this.t;
    this.log.textContent = "";
    this.log.appendChild(h(doc, "div", { class: "kbw-msg kbw-greeting", text: this.opts.greeting || t.greeting }));
    if (!this.state.messages.length && this.opts.suggestions && this.opts.suggestions.length) {
      const box = h(doc, "div", { class: "kbw-suggest", role: "group", "aria-label": t.suggested });
      for (const q of this.opts.suggestions.slice(0, 6)) {
        box.appendChild(h(doc, "button", { type: "button", text: q, onclick: () => this.ask(q) }));
      }
      this.log.appendChild(box);
    }
    for (const msg of this.state.messages) this.log.appendChild(this.renderMessage(msg));
    this.scroll();
  }

  renderMessage(msg) {
    const doc = this.doc;
    const t = this.t;
    if (msg.role === "user") return h(doc, "div", { class: "kbw-msg kbw-user", "aria-label": t.you, text: msg.text });
    const cls = ["kbw-msg", "kbw-answer"];
    if (msg.error) cls.push("kbw-error");
    if (msg.declined) cls.push("kbw-declined");
    const node = h(doc, "div", { class: cls.join(" "), "aria-label": t.assistant, "data-answer-id": msg.answerId || "" });
    msg.node = node;
    this.fillAnswer(msg);
    return node;
  }

  fillAnswer(msg) {
    const doc = this.doc;
    const t = this.t;
    const node = msg.node;
    node.textContent = "";
    if (msg.error) { node.appendChild(h(doc, "p", { role: "alert", text: msg.error })); return; }
    if (!msg.text && !msg.done) { node.appendChild(h(doc, "p", { class: "kbw-note", text: t.thinking })); return; }
    const byN = new Map((msg.citations || []).map((c) => [c.n, c]));
    const cite = (n) => {
      const c = byN.get(n);
      if (!c) return null;
      return h(doc, "button", { type: "button", class: "kbw-cite", "aria-label": `${t.source} ${n}: ${c.title}`,
        text: String(n), onclick: () => this.openSource(c) });
    };
    const body = h(doc, "div", { class: "kbw-body" });
    body.appendChild(renderMarkdown(doc, msg.text, cite));
    if (msg.unsupported && msg.unsupported.length) markUnsupported(doc, body, msg.unsupported, t.unsupported);
    node.appendChild(body);
    if (!msg.done) return;
    const cited = (msg.citations || []);
    if (cited.length) {
      const list = h(doc, "ol");
      for (const c of cited) {
        let label = c.page ? `${c.title} (${t.page} ${c.page})` : c.title;
        if (c.curated_by) label = `${c.title} · ${fmt(t.curatedBy, { who: c.curated_by, date: c.curated_on || "" })}${c.stale ? ` (${t.stale})` : ""}`;
        const item = h(doc, "li", { value: c.n }, h(doc, "button", { type: "button", text: label, onclick: () => this.openSource(c) }));
        list.appendChild(item);
      }
      node.appendChild(h(doc, "div", { class: "kbw-sources" }, h(doc, "div", { class: "kbw-note", text: t.sources }), list));
    }
    if (msg.unsupported && msg.unsupported.length) node.appendChild(h(doc, "p", { class: "kbw-note", text: t.unsupported }));
    if (msg.cached) node.appendChild(h(doc, "p", { class: "kbw-note kbw-cached", text: t.cached }));
    if (msg.answerId) node.appendChild(this.actions(msg));
  }

  actions(msg) {
    const doc = this.doc;
    const t = this.t;
    const bar = h(doc, "div", { class: "kbw-actions" });
    const status = h(doc, "span", { class: "kbw-note", role: "status" });
    const copy = h(doc, "button", { type: "button", text: t.copy, onclick: async () => {
      await this.copy(msg.text);
      status.textContent = t.copied;
    } });
    const rate = (rating) => {
      const label = rating === "up" ? t.helpful : t.notHelpful;
      return h(doc, "button", { type: "button", class: `kbw-rate-${rating}`, "aria-pressed": String(msg.feedback === rating),
        "aria-label": label, title: label, onclick: () => this.rate(msg, rating, bar, status) }, thumb(doc, rating));
    };
    bar.append(rate("up"), rate("down"), copy, status);
    if (msg.feedback) status.textContent = t.thanks;
    this.offerHandoff(msg, bar);
    return bar;
  }

  /** "Ask a person" under an answer that was declined, unsupported or thumbed down, when the
   * service has a hand-off channel; once sent, what became of it. */
  async offerHandoff(msg, bar) {
    const doc = this.doc;
    const t = this.t;
    const reason = msg.declined ? "declined" : (msg.unsupported && msg.unsupported.length ? "unsupported"
      : (msg.feedback === "down" ? "thumbs_down" : null));
    if (msg.handoff) { bar.appendChild(this.handoffNote(msg.handoff)); return; }
    if (!reason || bar.querySelector(".kbw-handoff") || !(await this.api.handoffAvailable())) return;
    if (bar.querySelector(".kbw-handoff") || msg.handoff) return;
    const button = h(doc, "button", { type: "button", class: "kbw-handoff", text: t.askPerson, onclick: () => {
      button.remove();
      const comment = h(doc, "textarea", { rows: 2, maxlength: 2000, "aria-label": t.handoffComment, placeholder: t.handoffComment });
      const contact = h(doc, "input", { type: "text", maxlength: 320, "aria-label": t.handoffContact, placeholder: t.handoffContact });
      const form = h(doc, "form", { class: "kbw-handoff-form", onsubmit: async (e) => {
        e.preventDefault();
        const note = h(doc, "p", { class: "kbw-note", role: "status", text: t.handoffSending });
        form.replaceWith(note);
        try {
          const made = await this.api.handoff({ answer_id: msg.answerId, conversation_id: this.state.conversationId,
            reason, comment: comment.value.trim() || null, contact: contact.value.trim() || null });
          msg.handoff = { id: made.handoff_id, ticket: made.ticket_id, status: made.status };
          this.save();
          note.replaceWith(this.handoffNote(msg.handoff));
          if (made.status === "pending") this.followHandoff(msg, bar);
        } catch (err) {
          note.textContent = this.errorText(err);
          bar.appendChild(button);
        }
      } }, comment, contact, h(doc, "button", { type: "submit", text: t.handoffSend }));
      bar.appendChild(form);
      comment.focus();
    } });
    bar.appendChild(button);
  }

  handoffNote(handoff) {
    const t = this.t;
    let text = fmt(t.handoffQueued, { id: handoff.id });
    if (handoff.status === "delivered") text = handoff.ticket ? fmt(t.handoffSent, { id: handoff.ticket }) : fmt(t.handoffSentRef, { id: handoff.id });
    else if (handoff.status === "failed") text = fmt(t.handoffFailed, { id: handoff.id });
    return h(this.doc, "p", { class: "kbw-note kbw-handoff-status", role: "status", text });
  }

  /** A queued hand-off: look again now and then (the outbox retries it) to show its ticket. */
  async followHandoff(msg, bar) {
    for (let i = 0; i < 24 && msg.handoff && msg.handoff.status === "pending"; i++) {
      await new Promise((r) => setTimeout(r, 5000));
      try {
        const now = await this.api.handoffStatus(msg.handoff.id);
        msg.handoff = { id: now.handoff_id, ticket: now.ticket_id, status: now.status };
      } catch (_) { continue; }
      this.save();
      const old = bar.querySelector(".kbw-handoff-status");
      if (old) old.replaceWith(this.handoffNote(msg.handoff));
    }
  }

  async rate(msg, rating, bar, status) {
    const doc = this.doc;
    const t = this.t;
    const send = async (comment) => {
      try {
        await this.api.feedback(msg.answerId, rating, comment);
        msg.feedback = rating;
        this.save();
        for (const b of bar.querySelectorAll("[aria-pressed]")) b.setAttribute("aria-pressed", String(b.classList.contains(`kbw-rate-${rating}`)));
        status.textContent = t.thanks;
        if (rating === "down") this.offerHandoff(msg, bar);
      } catch (e) {
        status.textContent = this.errorText(e);
      }
    };
    if (rating === "up") { await send(null); return; }
    if (bar.querySelector(".kbw-comment")) return;
    const input = h(doc, "input", { type: "text", maxlength: 2000, "aria-label": t.commentPrompt, placeholder: t.commentPrompt });
    const form = h(doc, "form", { class: "kbw-comment", onsubmit: async (e) => { e.preventDefault(); form.remove(); await send(input.value.trim() || null); } },
      input, h(doc, "button", { type: "submit", text: t.sendFeedback }));
    bar.appendChild(form);
    input.focus();
  }

  async copy(text) {
    try { await navigator.clipboard.writeText(text); return; } catch (_) { /* not a secure context */ }
    const area = h(this.doc, "textarea", { class: "kbw-sr" });
    area.value = text;
    this.root.appendChild(area);
    area.select();
    try { this.doc.execCommand("copy"); } catch (_) { /* nothing more to try */ }
    area.remove();
  }

  errorText(e) {
    const t = this.t;
    if (!(e instanceof ApiError)) return fmt(t.errGeneric, { m: String(e && e.message) });
    switch (e.kind) {
      case "unreachable": return t.errUnreachable;
      case "rate_limited": return fmt(t.errRateLimited, { s: e.retryAfter });
      case "origin": return t.errOrigin;
      case "identity": return t.errIdentity;
      case "not_ready": return t.errNotReady;
      default: return fmt(t.errGeneric, { m: e.message });
    }
  }

  async ask(raw) {
    const question = String(raw || "").trim();
    if (!question || this.busy) return;
    this.input.value = "";
    const doc = this.doc;
    this.showLog();
    const user = { role: "user", text: question };
    const answer = { role: "assistant", text: "", citations: [], done: false };
    this.state.messages.push(user, answer);
    const sug = this.log.querySelector(".kbw-suggest");
    if (sug) sug.remove();
    this.log.appendChild(this.renderMessage(user));
    this.log.appendChild(this.renderMessage(answer));
    this.scroll();
    if (!this.state.conversationId) this.state.conversationId = newId();
    this.busy = new AbortController();
    this.sendBtn.disabled = true;
    let pending = false;
    const repaint = () => {
      if (pending) return;
      pending = true;
      requestAnimationFrame(() => { pending = false; this.fillAnswer(answer); this.scroll(); });
    };
    try {
      await this.api.ask(question, this.state.conversationId, (name, data) => {
        if (name === "citations") { answer.citations = data.citations || []; }
        else if (name === "delta") { answer.text += data.text; repaint(); }
        else if (name === "done") {
          answer.done = true;
          answer.text = data.answer != null ? data.answer : answer.text;
          answer.citations = data.citations || answer.citations;
          answer.answerId = data.answer_id || null;
          answer.declined = !!data.declined;
          answer.unsupported = data.unsupported || [];
          answer.cached = !!data.cached;
          if (data.conversation_id) this.state.conversationId = data.conversation_id;
        } else if (name === "error") {
          answer.error = fmt(this.t.errGeneric, { m: data.message || "" });
        }
      }, this.busy.signal);
      if (!answer.done && !answer.error) answer.error = this.t.errUnreachable;
    } catch (e) {
      answer.error = this.errorText(e);
    } finally {
      this.busy = null;
      this.sendBtn.disabled = false;
    }
    answer.done = true;
    const fresh = this.renderMessage(answer);
    if (answer.node !== fresh) { /* renderMessage replaced msg.node */ }
    const old = this.log.querySelectorAll(".kbw-answer");
    const last = old[old.length - 1];
    if (last) last.replaceWith(fresh); else this.log.appendChild(fresh);
    this.save();
    this.scroll();
    void doc;
  }

  showLog() {
    this.viewer.hidden = true;
    this.log.hidden = false;
  }

  async openSource(c) {
    const doc = this.doc;
    const t = this.t;
    this.viewer.textContent = "";
    const back = h(doc, "button", { type: "button", class: "kbw-back", text: `← ${t.back}`, onclick: () => { this.showLog(); } });
    this.viewer.append(back);
    this.log.hidden = true;
    this.viewer.hidden = false;
    back.focus();
    if (c.curated_by) { // an answer an admin wrote: nothing to fetch, it is the source itself
      const meta = fmt(t.curatedBy, { who: c.curated_by, date: c.curated_on || "" }) + (c.stale ? ` · ${t.stale}` : "");
      this.viewer.append(h(doc, "h3", { text: c.title }), h(doc, "div", { class: "kbw-meta", text: meta }),
        h(doc, "div", { class: "kbw-passage kbw-hl", text: c.snippet || "" }));
      return;
    }
    try {
      const src = await this.api.source(c.doc_id);
      const meta = [src.source || c.source, c.section || "", c.page ? `${t.page} ${c.page}` : ""].filter(Boolean).join(" · ");
      this.viewer.append(h(doc, "h3", { text: src.title || c.title }), h(doc, "div", { class: "kbw-meta", text: meta }));
      // A crawled page (or a sidecar's link): open the original; only web addresses.
      if (/^https?:\/\//i.test(c.url || "")) {
        this.viewer.append(h(doc, "a", { class: "kbw-open", href: c.url, target: "_blank", rel: "noopener noreferrer", text: `${t.openOriginal} ↗` }));
      }
      const snippet = String(c.snippet || "").slice(0, 80);
      let target = null;
      for (const p of src.passages || []) {
        const hl = (c.chunk_id && p.chunk_id === c.chunk_id) || (!target && snippet && p.text.includes(snippet));
        const box = h(doc, "div", { class: `kbw-passage${hl ? " kbw-hl" : ""}` });
        if (p.section) box.appendChild(h(doc, "div", { class: "kbw-note", text: p.page ? `${p.section} · ${t.page} ${p.page}` : p.section }));
        box.appendChild(doc.createTextNode(p.text));
        if (hl && !target) target = box;
        this.viewer.appendChild(box);
      }
      if (target) target.scrollIntoView({ block: "center" });
    } catch (e) {
      const gone = e instanceof ApiError && e.kind === "other";
      this.viewer.append(h(doc, "p", { class: "kbw-msg kbw-error", role: "alert", text: gone ? t.errSourceGone : this.errorText(e) }));
    }
  }
}
