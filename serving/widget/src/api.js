// Talking to the service: POST /v1/ask as Server-Sent Events over fetch, feedback, sources.

export class ApiError extends Error {
  constructor(kind, message, retryAfter) {
    super(message);
    this.kind = kind; // unreachable | rate_limited | origin | identity | not_ready | other
    this.retryAfter = retryAfter;
  }
}

async function errorOf(resp) {
  let code = "";
  let message = `HTTP ${resp.status}`;
  try {
    const body = await resp.json();
    if (body && body.error) { code = body.error.code || ""; message = body.error.message || message; }
  } catch (_) { /* not JSON */ }
  const retry = Number(resp.headers.get("Retry-After") || "0") || 5;
  if (resp.status === 429) return new ApiError("rate_limited", message, retry);
  if (code === "origin_not_allowed" || code === "invalid_widget_token") return new ApiError("origin", message);
  if (resp.status === 401 || code === "invalid_identity") return new ApiError("identity", message);
  if (resp.status === 503) return new ApiError("not_ready", message, retry);
  return new ApiError("other", message);
}

export class Api {
  constructor(base, token, identity) {
    this.base = base.replace(/\/$/, "");
    this.token = token;
    // async ({refresh}) => string | null: the site's signed identity, or its identity
    // provider's ID or access token; refresh: true after a 401 (get a fresh one).
    this.identity = identity;
  }

  async headers(json, refresh = false) {
    const h = { "X-Widget-Token": this.token };
    if (json) h["Content-Type"] = "application/json";
    if (this.identity) {
      const id = await this.identity({ refresh });
      if (id) h["X-Widget-Identity"] = id;
    }
    return h;
  }

  async send(path, init) {
    try {
      return await fetch(this.base + path, { ...init, credentials: "omit", mode: "cors" });
    } catch (_) {
      throw new ApiError("unreachable", "network");
    }
  }

  async request(path, init) {
    let resp = await this.send(path, init);
    if (resp.status === 401 && this.identity) {
      // The sign-in may have expired: ask the site's callback for a fresh one, once.
      const json = Boolean(init.headers && init.headers["Content-Type"]);
      resp = await this.send(path, { ...init, headers: await this.headers(json, true) });
    }
    if (!resp.ok) throw await errorOf(resp);
    return resp;
  }

  /** Stream an answer; `on(event, data)` gets citations, delta, done and error events. */
  async ask(question, conversationId, on, signal) {
    const body = { question, stream: true };
    if (conversationId) body.conversation_id = conversationId;
    const resp = await this.request("/v1/ask", {
      method: "POST", headers: await this.headers(true), body: JSON.stringify(body), signal,
    });
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = "";
    for (;;) {
      let chunk;
      try {
        chunk = await reader.read();
      } catch (e) {
        if (signal && signal.aborted) return;
        throw new ApiError("unreachable", "stream");
      }
      if (chunk.done) break;
      buf += decoder.decode(chunk.value, { stream: true });
      let sep;
      while ((sep = buf.indexOf("\n\n")) >= 0) {
        const raw = buf.slice(0, sep);
        buf = buf.slice(sep + 2);
        let name = "message";
        const data = [];
        for (const line of raw.split("\n")) {
          if (line.startsWith("event: ")) name = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        }
        if (data.length) on(name, JSON.parse(data.join("\n")));
      }
    }
  }

  async feedback(answerId, rating, comment) {
    const body = { answer_id: answerId, rating };
    if (comment) body.comment = comment;
    await this.request("/v1/feedback", {
      method: "POST", headers: await this.headers(true), body: JSON.stringify(body),
    });
  }

  /** Whether "Ask a person" is offered (asked once per widget). */
  async handoffAvailable() {
    if (this._handoff === undefined) {
      this._handoff = this.request("/v1/handoff", { method: "GET", headers: await this.headers(false) })
        .then((r) => r.json()).then((b) => Boolean(b && b.available)).catch(() => false);
    }
    return this._handoff;
  }

  /** Hand an answer to a person; the reply says whether (and under which ticket) it went. */
  async handoff(body) {
    const headers = await this.headers(true);
    if (body.answer_id) headers["Idempotency-Key"] = `answer:${body.answer_id}`;
    const resp = await this.request("/v1/handoff", { method: "POST", headers, body: JSON.stringify(body) });
    return resp.json();
  }

  async handoffStatus(id) {
    const resp = await this.request(`/v1/handoff/${encodeURIComponent(id)}`, { method: "GET", headers: await this.headers(false) });
    return resp.json();
  }

  async source(docId) {
    const resp = await this.request(`/v1/documents/${encodeURIComponent(docId)}/source`, {
      method: "GET", headers: await this.headers(false),
    });
    return resp.json();
  }
}
