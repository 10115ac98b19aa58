// Inline SVG icons, built as DOM nodes (no innerHTML): they render in any browser, with or
// without an emoji font. The button that holds one carries the accessible name.
const SVG_NS = "http://www.w3.org/2000/svg";

// A thumb and its cuff, drawn for this widget on a 24x24 grid; "down" is "up" turned over.
const THUMB = "M7 10v11H3V10h4zm0 0l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.4l-1.6 7.6a2 2 0 0 1-2 1.6H7";

/** An <svg> icon ("up" or "down"), hidden from assistive technology. */
export function thumb(doc, direction) {
  const svg = doc.createElementNS(SVG_NS, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", "16");
  svg.setAttribute("height", "16");
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  svg.setAttribute("class", "kbw-icon");
  const path = doc.createElementNS(SVG_NS, "path");
  path.setAttribute("d", THUMB);
  path.setAttribute("fill", "none");
  path.setAttribute("stroke", "currentColor");
  path.setAttribute("stroke-width", "2");
  path.setAttribute("stroke-linejoin", "round");
  if (direction === "down") path.setAttribute("transform", "rotate(180 12 12)");
  svg.appendChild(path);
  return svg;
}
