// A small Markdown renderer that builds DOM nodes with textContent only: model output and
// document text can never inject HTML. Supports paragraphs, headings, bold, italic, inline
// code, fenced code, bullet and numbered lists, pipe tables, http(s) links and [n] citations.

const INLINE = /(\*\*[^*\n]+\*\*|\*[^*\s][^*\n]*\*|`[^`\n]+`|\[\d{1,3}\]|\[[^\]\n]+\]\([^)\s]+\))/g;

function el(doc, tag, cls, text) {
  const node = doc.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Render inline Markdown of `text` into `parent`. `cite(n)` makes a citation node or null. */
export function renderInline(doc, parent, text, cite) {
  let last = 0;
  for (const m of text.matchAll(INLINE)) {
    if (m.index > last) parent.appendChild(doc.createTextNode(text.slice(last, m.index)));
    const tok = m[0];
    let node = null;
    if (tok.startsWith("**")) {
      node = el(doc, "strong");
      renderInline(doc, node, tok.slice(2, -2), cite);
    } else if (tok.startsWith("`")) {
      node = el(doc, "code", "", tok.slice(1, -1));
    } else if (/^\[\d+\]$/.test(tok)) {
      node = cite ? cite(Number(tok.slice(1, -1))) : null;
    } else if (tok.startsWith("[")) {
      const close = tok.indexOf("](");
      const href = tok.slice(close + 2, -1);
      if (/^https?:\/\//i.test(href)) {
        node = el(doc, "a", "", tok.slice(1, close));
        node.href = href;
        node.target = "_blank";
        node.rel = "noopener noreferrer";
      }
    } else if (tok.startsWith("*")) {
      node = el(doc, "em");
      renderInline(doc, node, tok.slice(1, -1), cite);
    }
    parent.appendChild(node || doc.createTextNode(tok));
    last = m.index + tok.length;
  }
  if (last < text.length) parent.appendChild(doc.createTextNode(text.slice(last)));
}

function tableRow(line) {
  return line.trim().replace(/^\|/, "").replace(/\|$/, "").split("|").map((c) => c.trim());
}

/** Split an answer into blocks and render them; returns a DocumentFragment. */
export function renderMarkdown(doc, text, cite) {
  const out = doc.createDocumentFragment();
  const lines = String(text).replace(/\r\n?/g, "\n").split("\n");
  let i = 0;
  while (i < lines.length) {
    const line = lines[i];
    if (!line.trim()) { i++; continue; }
    if (line.startsWith("```")) {
      const code = [];
      i++;
      while (i < lines.length && !lines[i].startsWith("```")) code.push(lines[i++]);
      i++;
      const pre = el(doc, "pre");
      pre.appendChild(el(doc, "code", "", code.join("\n")));
      out.appendChild(pre);
      continue;
    }
    const heading = /^(#{1,6})\s+(.*)$/.exec(line);
    if (heading) {
      const h = el(doc, "p", "kbw-h");
      const strong = el(doc, "strong");
      renderInline(doc, strong, heading[2], cite);
      h.appendChild(strong);
      out.appendChild(h);
      i++;
      continue;
    }
    if (/^\s*\|.*\|\s*$/.test(line) && i + 1 < lines.length && /^\s*\|?[\s:-]+\|/.test(lines[i + 1])) {
      const table = el(doc, "table");
      const head = el(doc, "tr");
      for (const c of tableRow(line)) { const th = el(doc, "th"); renderInline(doc, th, c, cite); head.appendChild(th); }
      const thead = el(doc, "thead"); thead.appendChild(head); table.appendChild(thead);
      const body = el(doc, "tbody");
      i += 2;
      while (i < lines.length && /^\s*\|.*\|\s*$/.test(lines[i])) {
        const tr = el(doc, "tr");
        for (const c of tableRow(lines[i])) { const td = el(doc, "td"); renderInline(doc, td, c, cite); tr.appendChild(td); }
        body.appendChild(tr);
        i++;
      }
      table.appendChild(body);
      const wrap = el(doc, "div", "kbw-table");
      wrap.appendChild(table);
      out.appendChild(wrap);
      continue;
    }
    const bullet = /^\s*([-*+]|\d+[.)])\s+/;
    if (bullet.test(line)) {
      const ordered = /^\s*\d/.test(line);
      const list = el(doc, ordered ? "ol" : "ul");
      while (i < lines.length && bullet.test(lines[i])) {
        const li = el(doc, "li");
        renderInline(doc, li, lines[i].replace(bullet, ""), cite);
        list.appendChild(li);
        i++;
      }
      out.appendChild(list);
      continue;
    }
    const para = [];
    while (i < lines.length && lines[i].trim() && !lines[i].startsWith("```") && !bullet.test(lines[i]) && !/^#{1,6}\s/.test(lines[i])) {
      para.push(lines[i++]);
    }
    const p = el(doc, "p");
    renderInline(doc, p, para.join("\n"), cite);
    out.appendChild(p);
  }
  return out;
}
