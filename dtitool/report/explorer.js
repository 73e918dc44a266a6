// The power explorer page (dtitool/report/explorer.py): draws power and size of
// the chosen test against the chosen grid axis from the embedded grid data.
"use strict";
const D = JSON.parse(document.getElementById("grid-data").textContent);
const $ = (id) => document.getElementById(id);
const axes = D.axes, A = axes.length;
const strides = new Array(A).fill(1);
for (let i = A - 2; i >= 0; i--) strides[i] = strides[i + 1] * axes[i + 1].values.length;
const nearest = (vals, v) => {
  let best = 0;
  vals.forEach((x, i) => { if (Math.abs(x - v) < Math.abs(vals[best] - v)) best = i; });
  return best;
};
const fmt = (v, d) => (v === null || v === undefined) ? "\u2013" : Number(v).toFixed(d);
const fmtx = (v) => Number.isInteger(v) ? String(v) : String(+v.toFixed(4));

function build() {
  const test = $("test");
  D.suggested.concat(D.tests.map((_, i) => i).filter(i => !D.suggested.includes(i)))
    .forEach(i => { const o = document.createElement("option");
                    o.value = i; o.textContent = D.tests[i]; test.appendChild(o); });
  test.value = D.default_test;
  const xsel = $("xaxis");
  axes.forEach((a, i) => { const o = document.createElement("option");
                           o.value = i; o.textContent = a.name; xsel.appendChild(o); });
  xsel.value = Math.max(0, D.names.indexOf("n"));
  const box = $("sliders");
  axes.forEach((a, i) => {
    const w = document.createElement("div");
    w.id = "wrap-" + a.name;
    const lab = document.createElement("label");
    lab.htmlFor = "axis-" + a.name;
    lab.innerHTML = a.name + ": <output id='val-" + a.name + "'></output>";
    const s = document.createElement("input");
    s.type = "range"; s.min = 0; s.max = a.values.length - 1; s.step = 1;
    s.id = "axis-" + a.name;
    s.value = Number.isFinite(a.base) ? nearest(a.values, a.base) : 0;
    s.addEventListener("input", draw);
    w.appendChild(lab); w.appendChild(s); box.appendChild(w);
  });
  test.addEventListener("change", draw);
  xsel.addEventListener("change", draw);
  $("target").value = D.target;
  $("target").addEventListener("input", draw);
}

function settings() {
  return axes.map(a => Number($("axis-" + a.name).value));
}

function index(pos) { return pos.reduce((s, p, i) => s + p * strides[i], 0); }

function series() {
  const t = Number($("test").value), x = Number($("xaxis").value);
  const pos = settings();
  return axes[x].values.map((xv, k) => {
    pos[x] = k;
    const j = index(pos);
    return {x: xv, power: D.power[t][j], lo: D.power_ci_low[t][j],
            hi: D.power_ci_high[t][j], size: D.size[t][j]};
  });
}

function reachN(target) {
  const ni = D.names.indexOf("n");
  if (ni < 0) return undefined;
  const t = Number($("test").value), pos = settings();
  for (let k = 0; k < axes[ni].values.length; k++) {
    pos[ni] = k;
    const p = D.power[t][index(pos)];
    if (p !== null && p >= target) return axes[ni].values[k];
  }
  return null;
}

function draw() {
  const x = Number($("xaxis").value);
  axes.forEach((a, i) => {
    $("val-" + a.name).textContent = fmtx(a.values[Number($("axis-" + a.name).value)]);
    $("wrap-" + a.name).className = i === x ? "off" : "";
    $("axis-" + a.name).disabled = i === x;
  });
  let target = Number($("target").value);
  if (!(target > 0 && target < 1)) target = D.target;
  const pts = series();
  const W = 720, H = 400, L = 56, R = 16, T = 14, B = 46;
  const xs = pts.map(p => p.x);
  const x0 = Math.min(...xs), x1 = Math.max(...xs);
  const sx = v => L + (x1 > x0 ? (v - x0) / (x1 - x0) : 0.5) * (W - L - R);
  const sy = v => T + (1 - v) * (H - T - B);
  const svg = [];
  svg.push(`<g class="axis"><line x1="${L}" y1="${sy(0)}" x2="${W - R}" y2="${sy(0)}"/>` +
           `<line x1="${L}" y1="${sy(0)}" x2="${L}" y2="${sy(1)}"/>`);
  for (let v = 0; v <= 1.0001; v += 0.2) {
    svg.push(`<line x1="${L - 4}" y1="${sy(v)}" x2="${L}" y2="${sy(v)}"/>` +
             `<text x="${L - 8}" y="${sy(v) + 4}" text-anchor="end">${v.toFixed(1)}</text>`);
  }
  const every = Math.max(1, Math.ceil(xs.length / 12));
  xs.forEach((v, k) => { if (k % every === 0 || k === xs.length - 1) svg.push(
    `<line x1="${sx(v)}" y1="${sy(0)}" x2="${sx(v)}" y2="${sy(0) + 4}"/>` +
    `<text x="${sx(v)}" y="${sy(0) + 18}" text-anchor="middle">${fmtx(v)}</text>`); });
  svg.push(`<text x="${(L + W - R) / 2}" y="${H - 6}" text-anchor="middle">` +
           `${axes[x].name}</text></g>`);
  // the CI band and lines, broken where a point is not a possible design
  const runs = [];
  let cur = [];
  pts.forEach(p => { if (p.power === null) { if (cur.length) runs.push(cur); cur = []; }
                     else cur.push(p); });
  if (cur.length) runs.push(cur);
  runs.forEach(run => {
    const up = run.map(p => `${sx(p.x)},${sy(p.hi)}`);
    const down = run.slice().reverse().map(p => `${sx(p.x)},${sy(p.lo)}`);
    svg.push(`<polygon class="band" points="${up.concat(down).join(" ")}"/>`);
    svg.push(`<polyline class="power" points="${run.map(p => `${sx(p.x)},${sy(p.power)}`).join(" ")}"/>`);
    const sz = run.filter(p => p.size !== null);
    if (sz.length) svg.push(`<polyline class="size" points="${sz.map(p => `${sx(p.x)},${sy(p.size)}`).join(" ")}"/>`);
  });
  pts.forEach(p => {
    if (p.power !== null) svg.push(`<circle class="pt-power" r="3.5" cx="${sx(p.x)}" cy="${sy(p.power)}" data-x="${p.x}" data-power="${p.power}" data-lo="${p.lo}" data-hi="${p.hi}"/>`);
    if (p.size !== null) svg.push(`<circle class="pt-size" r="2.5" cx="${sx(p.x)}" cy="${sy(p.size)}" data-x="${p.x}" data-size="${p.size}"/>`);
  });
  svg.push(`<line class="target" x1="${L}" x2="${W - R}" y1="${sy(target)}" y2="${sy(target)}"/>`);
  const n = reachN(target);
  if (D.names[x] === "n" && n !== undefined && n !== null) {
    svg.push(`<line class="reach" id="reach" data-n="${n}" x1="${sx(n)}" x2="${sx(n)}" y1="${sy(0)}" y2="${sy(1)}"/>` +
             `<text x="${sx(n) + 4}" y="${sy(1) + 12}" font-size="12">n = ${n}</text>`);
  }
  svg.push(`<g class="legend"><line class="power" x1="${L + 10}" x2="${L + 34}" y1="${T + 8}" y2="${T + 8}"/>` +
           `<text x="${L + 40}" y="${T + 12}">power (95% band)</text>` +
           `<line class="size" x1="${L + 170}" x2="${L + 194}" y1="${T + 8}" y2="${T + 8}"/>` +
           `<text x="${L + 200}" y="${T + 12}">size (null counterpart)</text>` +
           `<line class="target" x1="${L + 360}" x2="${L + 384}" y1="${T + 8}" y2="${T + 8}"/>` +
           `<text x="${L + 390}" y="${T + 12}">target power ${target}</text></g>`);
  $("plot").innerHTML = svg.join("");
  const ans = $("answer");
  if (n === undefined) ans.textContent = "n is not an axis of this grid.";
  else if (n === null) ans.textContent = `No grid n reaches power ${target} for this test at these settings.`;
  else ans.textContent = `Smallest grid n reaching power ${target} for this test at these settings: n = ${n}.`;
  ans.dataset.n = n === undefined || n === null ? "" : String(n);
  $("rows").innerHTML = pts.map(p => `<tr><td>${fmtx(p.x)}</td>` + (p.power === null ?
    `<td colspan="4">not a possible design</td>` :
    `<td>${fmt(p.power, 3)}</td><td>${fmt(p.lo, 3)}\u2013${fmt(p.hi, 3)}</td><td>${fmt(p.size, 3)}</td>`) +
    `</tr>`).join("");
  $("xhead").textContent = axes[x].name;
}

build();
draw();
