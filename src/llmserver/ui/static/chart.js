// A stacked bar chart in plain SVG: tokens per day, one colour per key.

import {h, s} from "./dom.js";

const COLOURS = ["#3b6fd8", "#d8843b", "#3ba776", "#b23bd8", "#d83b5a", "#7a8a99", "#c9b12c", "#2cb5c9"];
const W = 640;
const H = 220;
const PAD = {left: 48, right: 8, top: 10, bottom: 28};

function days(today, count) {
  const out = [];
  const end = new Date(`${today}T00:00:00Z`);
  for (let i = count - 1; i >= 0; i--) {
    const day = new Date(end.getTime() - i * 86400000);
    out.push(day.toISOString().slice(0, 10));
  }
  return out;
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

/** The chart for usage rows ({day, key_name, total_tokens}) over `count` days up to `today`. */
export function usageChart(rows, today, count) {
  const axis = days(today, count);
  const keys = [...new Set(rows.map((r) => r.key_name))].sort();
  const perDay = new Map(axis.map((d) => [d, new Map()]));
  for (const row of rows) {
    const day = perDay.get(row.day);
    if (day) day.set(row.key_name, (day.get(row.key_name) || 0) + row.total_tokens);
  }
  const totals = axis.map((d) => [...perDay.get(d).values()].reduce((a, b) => a + b, 0));
  const top = niceMax(Math.max(0, ...totals));
  const plotW = W - PAD.left - PAD.right;
  const plotH = H - PAD.top - PAD.bottom;
  const barW = plotW / axis.length;
  const y = (v) => PAD.top + plotH - (v / top) * plotH;
  const parts = [];
  for (const tick of [0, top / 2, top]) {
    parts.push(s("line", {x1: PAD.left, x2: W - PAD.right, y1: y(tick), y2: y(tick), class: "grid"}));
    parts.push(s("text", {x: PAD.left - 4, y: y(tick) + 4, "text-anchor": "end", class: "tick"},
      tick.toLocaleString("en-US")));
  }
  axis.forEach((day, i) => {
    let base = 0;
    keys.forEach((key, k) => {
      const value = perDay.get(day).get(key) || 0;
      if (!value) return;
      const top2 = base + value;
      parts.push(s("rect", {
        x: PAD.left + i * barW + 1, width: Math.max(barW - 2, 1),
        y: y(top2), height: Math.max(y(base) - y(top2), 0.5),
        fill: COLOURS[k % COLOURS.length], "data-day": day, "data-key": key,
      }, s("title", {}, `${day} ${key}: ${value.toLocaleString("en-US")} tokens`)));
      base = top2;
    });
    if (i % 5 === axis.length % 5 || i === axis.length - 1) {
      parts.push(s("text", {x: PAD.left + (i + 0.5) * barW, y: H - 8, "text-anchor": "middle", class: "tick"},
        day.slice(5)));
    }
  });
  const svg = s("svg", {viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "Tokens per day by key"}, parts);
  const legend = h("ul", {class: "legend"}, keys.map((key, k) => {
    const swatch = h("span", {class: "swatch"});
    swatch.style.background = COLOURS[k % COLOURS.length];  // CSSOM, allowed by the CSP
    return h("li", {}, swatch, key);
  }));
  return [svg, keys.length ? legend : h("p", {class: "hint"}, "No usage in these days.")];
}
