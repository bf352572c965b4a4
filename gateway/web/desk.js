// The trading desk: exposure against limits, venues, open quotes and locks,
// swaps by state with each swap's event history, the halt and resume
// control, charts of price and exposure, the payout approval queue, and the
// panels other services will provide (custody tiers, hedges, P&L). Live from
// /v1/desk/ws; actions through /v1/desk/* with the desk token.
import { api, ApiError, el, fill, fmtTime, wsUrl } from "/web/common.js";

const $ = (id) => document.getElementById(id);
const TOKEN_KEY = "swap-desk-token";
const HISTORY_POINTS = 300; // five minutes at one snapshot a second

const desk = {
  token: sessionStorage.getItem(TOKEN_KEY),
  ws: null,
  prices: new Map(), // market -> [[t, mid]]
  exposures: new Map(), // asset -> [[t, exposure]]
  selectedState: null,
  selectedSwap: null,
  lastPanels: 0,
};

function call(path, opts = {}) {
  return api(path, { ...opts, token: desk.token }).catch((e) => {
    if (e instanceof ApiError && e.status === 401) signOut("The desk token was refused.");
    throw e;
  });
}

function signOut(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  desk.token = null;
  desk.ws?.close();
  $("panels").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message ?? "";
}

async function signIn(token) {
  desk.token = token;
  try {
    const snap = await call("/v1/desk/overview");
    sessionStorage.setItem(TOKEN_KEY, token);
    $("login").hidden = true;
    $("panels").hidden = false;
    render(snap);
    connect();
    refreshPanels();
    refreshSwapList();
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) $("login-error").textContent = e.message;
  }
}

function connect() {
  const ws = new WebSocket(wsUrl("/v1/desk/ws"));
  desk.ws = ws;
  ws.addEventListener("open", () => ws.send(JSON.stringify({ type: "auth", token: desk.token })));
  ws.addEventListener("message", (ev) => {
    const msg = JSON.parse(ev.data);
    if (msg.type === "snapshot") {
      $("connection").textContent = "live";
      render(msg);
      if (Date.now() - desk.lastPanels > 5000) {
        refreshPanels();
        refreshSwapList();
      }
    } else if (msg.type === "error") {
      $("desk-error").textContent = msg.message;
    }
  });
  ws.addEventListener("close", () => {
    $("connection").textContent = "offline";
    if (desk.ws === ws && desk.token) setTimeout(connect, 1000);
  });
}

function pct(part, whole) {
  const p = Number(part), w = Number(whole);
  return w > 0 ? `${((100 * p) / w).toFixed(1)} %` : "—";
}

function rows(table, list, row) {
  fill(table.tBodies[0], list.length ? list.map(row) : el("tr", {}, el("td", { colspan: 99, class: "muted" }, "none")));
}

function render(snap) {
  const t = snap.trading;
  const badge = $("trading-state");
  badge.textContent = t.state === "active" ? "quoting" : `halted: ${t.reason}`;
  badge.dataset.state = t.state;
  badge.className = `badge ${t.state}`;
  $("halt").disabled = t.state !== "active";
  $("resume").disabled = t.state === "active";

  rows($("exposure"), snap.assets, (a) =>
    el("tr", { dataset: { asset: a.asset } },
      el("td", {}, a.asset), el("td", { class: "num" }, a.exposure), el("td", { class: "num" }, a.inventory),
      el("td", { class: "num" }, a.reserved), el("td", { class: "num" }, a.available),
      el("td", { class: "num" }, pct(a.reserved, a.inventory)), el("td", { class: "num" }, `${a.min_per_swap} – ${a.max_per_swap}`)));

  rows($("venues"), snap.venues, (v) =>
    el("tr", { class: v.connected ? "" : "bad" },
      el("td", {}, v.venue), el("td", {}, v.connected ? "yes" : "no"),
      el("td", { class: "num" }, v.staleness_ms == null ? "never" : `${(v.staleness_ms / 1000).toFixed(1)} s`),
      el("td", { class: "num" }, v.last_sequence ?? "—"), el("td", { class: "num" }, v.latency_ms == null ? "—" : `${v.latency_ms} ms`),
      el("td", { class: "num" }, v.reconnects), el("td", { class: "num" }, v.resyncs), el("td", {}, v.last_error ?? "")));
  rows($("markets"), snap.markets, (m) =>
    el("tr", { class: m.fresh ? "" : "bad" }, el("td", {}, m.market), el("td", { class: "num" }, m.mid ?? "—"),
      el("td", {}, m.fresh ? "yes" : "stale"), el("td", {}, m.venues.join(", "))));

  rows($("quotes"), snap.quotes, (q) =>
    el("tr", {}, el("td", {}, q.status), el("td", { class: "id" }, q.quote_id.slice(0, 8)),
      el("td", { class: "id" }, q.swap_id ? q.swap_id.slice(0, 8) : "—"),
      el("td", { class: "num" }, `${q.amount_in} ${q.from}`), el("td", { class: "num" }, `${q.amount_out} ${q.to}`),
      el("td", { class: "num" }, q.price), el("td", {}, fmtTime(q.expires_at))));

  const states = Object.entries(snap.swaps_by_state);
  fill($("swap-states"),
    el("button", { type: "button", class: desk.selectedState === null ? "chip on" : "chip", onclick: () => selectState(null) }, "all"),
    states.map(([s, n]) => el("button", { type: "button", class: desk.selectedState === s ? "chip on" : "chip", dataset: { state: s }, onclick: () => selectState(s) }, `${s} ${n}`)));

  rows($("chains"), snap.chains, (c) => el("tr", {}, el("td", {}, c.network), el("td", { class: "num" }, c.tip_height ?? "—")));
  rows($("bus"), snap.bus, (b) => el("tr", {}, el("td", {}, b.group), el("td", {}, b.topic), el("td", { class: "num" }, b.messages)));

  const at = new Date(snap.at).getTime();
  for (const m of snap.markets) if (m.mid != null) push(desk.prices, m.market, at, Number(m.mid));
  for (const a of snap.assets) push(desk.exposures, a.asset, at, Number(a.exposure));
  chart($("price-chart"), desk.prices, true);
  chart($("exposure-chart"), desk.exposures, false);
}

function push(map, key, t, v) {
  const series = map.get(key) ?? [];
  if (series.length && series[series.length - 1][0] === t) return;
  series.push([t, v]);
  if (series.length > HISTORY_POINTS) series.shift();
  map.set(key, series);
}

const SVG = "http://www.w3.org/2000/svg";
const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2"];

/** Small line charts; `normalise` draws each series on its own scale. */
function chart(container, seriesMap, normalise) {
  const w = 460, h = 160, pad = 4;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
  svg.setAttribute("role", "img");
  const all = [...seriesMap.values()].flat();
  if (all.length < 2) {
    fill(container, el("p", { class: "muted" }, "collecting…"));
    return;
  }
  const t0 = Math.min(...all.map((p) => p[0])), t1 = Math.max(...all.map((p) => p[0]));
  let [g0, g1] = [Math.min(...all.map((p) => p[1])), Math.max(...all.map((p) => p[1]))];
  const legend = [];
  [...seriesMap.entries()].forEach(([name, pts], i) => {
    let [v0, v1] = normalise ? [Math.min(...pts.map((p) => p[1])), Math.max(...pts.map((p) => p[1]))] : [g0, g1];
    if (v1 === v0) { v0 -= 1; v1 += 1; }
    const x = (t) => pad + ((t - t0) / Math.max(1, t1 - t0)) * (w - 2 * pad);
    const y = (v) => h - pad - ((v - v0) / (v1 - v0)) * (h - 2 * pad);
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", pts.map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`).join(" "));
    line.setAttribute("fill", "none");
    line.setAttribute("stroke", COLORS[i % COLORS.length]);
    line.setAttribute("stroke-width", "2");
    svg.append(line);
    const last = pts[pts.length - 1][1];
    const key = el("span", { class: "legend" }, `${name} ${last}`);
    key.style.setProperty("--c", COLORS[i % COLORS.length]); // CSSOM: allowed by the page's CSP
    legend.push(key);
  });
  fill(container, svg, el("div", {}, legend));
}

async function selectState(s) {
  desk.selectedState = s;
  await refreshSwapList();
}

async function refreshSwapList() {
  const q = desk.selectedState ? `?state=${encodeURIComponent(desk.selectedState)}&limit=50` : "?limit=50";
  try {
    const swaps = await call(`/v1/desk/swaps${q}`);
    rows($("swap-list"), swaps, (s) =>
      el("tr", { class: "clickable", dataset: { swap: s.swap_id }, onclick: () => showHistory(s.swap_id) },
        el("td", { class: "id" }, s.swap_id), el("td", {}, s.state),
        el("td", {}, `${s.deposit_chain} ${s.deposit_address}`), el("td", {}, fmtTime(s.updated_at_ms))));
  } catch (e) {
    $("desk-error").textContent = e.message;
  }
}

async function showHistory(swapId) {
  desk.selectedSwap = swapId;
  try {
    const h = await call(`/v1/desk/swaps/${swapId}`);
    fill($("swap-history"),
      el("h3", {}, `Swap ${h.swap.swap_id}: ${h.swap.state} (version ${h.swap.version})`),
      el("ol", { class: "events" }, h.events.map((e) =>
        el("li", { dataset: { kind: e.kind } },
          el("strong", {}, e.kind), ` v${e.version} at ${fmtTime(e.occurred_at_ms)} `,
          el("code", {}, JSON.stringify(e.payload))))));
  } catch (e) {
    $("desk-error").textContent = e.message;
  }
}

/** A panel fed by a desk endpoint that another service backs. */
async function panel(id, path, render) {
  try {
    render($(id), await call(path));
  } catch (e) {
    const text = e instanceof ApiError && e.status === 501 ? `Not provided yet: ${e.message}` : e.message;
    fill($(id), el("p", { class: "muted", dataset: { unavailable: "" } }, text));
  }
}

function table(headers, list, row) {
  return el("table", {}, el("thead", {}, el("tr", {}, headers.map((h) => el("th", {}, h)))),
    el("tbody", {}, list.length ? list.map(row) : el("tr", {}, el("td", { colspan: headers.length, class: "muted" }, "none"))));
}

function refreshPanels() {
  desk.lastPanels = Date.now();
  panel("custody", "/v1/desk/custody", (node, c) => fill(node,
    table(["tier", "asset", "amount", "limit"], c.tiers, (t) => el("tr", {}, el("td", {}, t.tier), el("td", {}, t.asset), el("td", { class: "num" }, t.amount), el("td", { class: "num" }, t.limit ?? "—"))),
    table(["venue", "asset", "amount"], c.venues, (v) => el("tr", {}, el("td", {}, v.venue), el("td", {}, v.asset), el("td", { class: "num" }, v.amount)))));
  panel("approvals", "/v1/desk/approvals", (node, list) => fill(node,
    table(["payment", "amount", "to", "why", "since", ""], list, (p) => el("tr", { dataset: { payment: p.payment_id } },
      el("td", { class: "id" }, p.payment_id), el("td", { class: "num" }, `${p.amount} ${p.asset}`),
      el("td", { class: "id" }, p.address), el("td", {}, p.reason ?? ""), el("td", {}, fmtTime(p.created_at)),
      el("td", {}, p.status === "approval"
        ? el("button", { type: "button", class: "approve", onclick: () => approve(p.payment_id) }, "Approve")
        : p.status)))));
  panel("hedges", "/v1/desk/hedges", (node, list) => fill(node,
    table(["order", "venue", "market", "side", "amount", "filled", "avg price", "status"], list, (o) => el("tr", {},
      el("td", { class: "id" }, o.client_order_id), el("td", {}, o.venue), el("td", {}, o.market), el("td", {}, o.side),
      el("td", { class: "num" }, o.amount), el("td", { class: "num" }, o.filled), el("td", { class: "num" }, o.average_price ?? "—"), el("td", {}, o.status)))));
  panel("pnl", "/v1/desk/pnl", (node, p) => fill(node,
    el("p", {}, `Realized ${p.realized} ${p.currency}, unrealized ${p.unrealized} ${p.currency}`),
    table(["asset", "position", "realized", "unrealized"], p.assets, (a) => el("tr", {},
      el("td", {}, a.asset), el("td", { class: "num" }, a.position), el("td", { class: "num" }, a.realized), el("td", { class: "num" }, a.unrealized)))));
}

async function approve(paymentId) {
  const approver = $("approver").value.trim();
  try {
    await call(`/v1/desk/approvals/${encodeURIComponent(paymentId)}/approve`, { method: "POST", body: { approver } });
  } catch (e) {
    $("desk-error").textContent = e.message;
  }
  refreshPanels();
}

async function halt(ev) {
  ev.preventDefault();
  const reason = $("halt-reason").value.trim() || "halted from the desk";
  try {
    render({ ...(await call("/v1/desk/overview")), trading: await call("/v1/desk/halt", { method: "POST", body: { reason } }) });
  } catch (e) {
    $("desk-error").textContent = e.message;
  }
}

async function resume() {
  try {
    render({ ...(await call("/v1/desk/overview")), trading: await call("/v1/desk/resume", { method: "POST" }) });
  } catch (e) {
    $("desk-error").textContent = e.message;
  }
}

$("login-form").addEventListener("submit", (ev) => {
  ev.preventDefault();
  $("login-error").textContent = "";
  signIn($("token").value.trim());
});
$("halt-form").addEventListener("submit", halt);
$("resume").addEventListener("click", resume);
if (desk.token) signIn(desk.token);
else $("login").hidden = false;
