// Entry point: <script src=".../widget.js" data-token="..." defer></script>.
// Configuration: window.KBWidgetConfig (an object, may hold functions), overridden by data-*
// attributes. Exposes window.KBWidget.mount(options) for pages that mount it themselves.
import { Widget } from "./widget.js";

function fromScript(script) {
  if (!script) return {};
  const d = script.dataset;
  const out = {};
  for (const k of ["token", "title", "greeting", "color", "position", "lang", "mode", "target"]) {
    if (d[k]) out[k] = d[k];
  }
  if (d.suggestions) {
    try { out.suggestions = JSON.parse(d.suggestions); } catch (_) { out.suggestions = d.suggestions.split("|").map((s) => s.trim()).filter(Boolean); }
  }
  if (d.identityCallback && typeof window[d.identityCallback] === "function") out.identity = window[d.identityCallback];
  out.base = d.api || new URL(script.src, location.href).origin;
  return out;
}

export function mount(options) {
  const opts = { mode: "launcher", position: "right", lang: document.documentElement.lang || navigator.language, ...options };
  if (!opts.token) throw new Error("kb-widget: data-token is required");
  if (!opts.base) throw new Error("kb-widget: the service address (data-api) is required");
  const widget = new Widget(opts).mount();
  window.KBWidget.instances.push(widget);
  return widget;
}

const script = document.currentScript;
window.KBWidget = window.KBWidget || { instances: [] };
window.KBWidget.mount = mount;
const start = () => {
  const cfg = { ...(window.KBWidgetConfig || {}), ...fromScript(script) };
  if (cfg.token && cfg.autoMount !== false) mount(cfg);
};
if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
else start();
