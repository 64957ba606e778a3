// fluxchain dashboard: one page, hash routes, the node's own JSON API and block stream.
//
// Rule of this file: data from the chain reaches the page only as text. `el()` turns every
// child string into a text node, and no HTML-parsing property or call is used. Links
// are built from encodeURIComponent'd values under "#/", never from chain strings alone.
"use strict";

const COIN = 100000000; // base units per FLUX (fluxchain.core.params.COIN)
const RECENT_BLOCKS = 60; // blocks kept for the overview's charts
const TIERS = ["cumulus", "nimbus", "stratus"];
const STATES = ["registered", "confirmed", "down", "expired", "jailed", "unbonding"];

// -- DOM helpers -------------------------------------------------------------------------

function el(tag, props, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else if (key === "value") node.value = value;
    else node.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

// Replace a node's children, leaving out the null/false ones (optional sections).
function fill(parent, ...children) {
  parent.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
}

function svg(tag, attrs, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, String(value));
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function link(hash, text, attrs) {
  return el("a", { href: hash, ...(attrs || {}) }, text);
}

const enc = encodeURIComponent;
const nodeLink = (id) => link(`#/nodes/${enc(id)}`, short(id), { class: "mono", title: id });
const appLink = (name) => link(`#/apps/${enc(name)}`, name);
// What an instance's hosting agent reports (`agent` of /apps/{name}: the node asks the host).
const agentReport = (agent) => {
  if (!agent) return "—";
  if (!agent.reachable) return `host unreachable (${agent.error})`;
  if (!agent.components.length) return agent.problem || "not started yet";
  return agent.components
    .map((c) => `${c.component}: ${c.state}${c.owner_restarts ? ` (restarted ×${c.owner_restarts})` : ""}${c.message ? ` — ${c.message}` : ""}`)
    .join("; ");
};
const accountLink = (address) => link(`#/accounts/${enc(address)}`, short(address, 10), { class: "mono", title: address });
const blockLink = (height) => (Number(height) === 0 ? "genesis" : link(`#/blocks/${enc(height)}`, String(height)));
const txLink = (id) => link(`#/txs/${enc(id)}`, short(id), { class: "mono", title: id });

function short(text, keep = 8) {
  const s = String(text);
  return s.length > 2 * keep + 1 ? `${s.slice(0, keep)}…${s.slice(-keep)}` : s;
}

function num(n) {
  return Number(n).toLocaleString("en-US");
}

function flux(units) {
  // Exact: integer base units split at 8 decimals, trailing zeros dropped.
  const value = BigInt(units);
  const whole = value / BigInt(COIN);
  const frac = (value % BigInt(COIN)).toString().padStart(8, "0").replace(/0+$/, "");
  return `${num(whole)}${frac ? "." + frac : ""} FLUX`;
}

function badge(text) {
  return el("span", { class: `badge ${text}` }, text);
}

function facts(pairs) {
  return el("dl", { class: "facts" }, pairs.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function table(columns, rows, attrs) {
  return el(
    "table",
    attrs || {},
    el("thead", {}, el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : "" }, c.label)))),
    el(
      "tbody",
      {},
      rows.length
        ? rows.map((row) => el("tr", row.attrs || {}, columns.map((c) => el("td", { class: c.num ? "num" : "" }, c.cell(row)))))
        : el("tr", {}, el("td", { colspan: columns.length, class: "muted" }, "nothing yet"))
    )
  );
}

function ago(ms) {
  const s = Math.max(0, Math.round((Date.now() - ms) / 1000));
  return s < 120 ? `${s}s ago` : `${Math.round(s / 60)} min ago`;
}

// -- addresses ------------------------------------------------------------------------------
// Events carry 20-byte addresses as hex; people know them as bech32 (BIP 173, as
// fluxchain.core.crypto.encode_address writes them), so the page encodes them the same way.

const BECH32_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l";
const BECH32_GENERATOR = [0x3b6a57b2, 0x26508e6d, 0x1ea119fa, 0x3d4233dd, 0x2a1462b3];

function bech32Polymod(values) {
  let chk = 1;
  for (const value of values) {
    const top = chk >>> 25;
    chk = ((chk & 0x1ffffff) << 5) ^ value;
    for (let i = 0; i < 5; i++) if ((top >>> i) & 1) chk ^= BECH32_GENERATOR[i];
  }
  return chk >>> 0;
}

function bech32Address(hrp, hex) {
  const words = [];
  let acc = 0;
  let bits = 0;
  for (let i = 0; i < hex.length; i += 2) {
    acc = ((acc << 8) | parseInt(hex.slice(i, i + 2), 16)) & 0xfff;
    bits += 8;
    while (bits >= 5) {
      bits -= 5;
      words.push((acc >>> bits) & 31);
    }
  }
  if (bits > 0) words.push((acc << (5 - bits)) & 31);
  const expanded = [...hrp].map((c) => c.charCodeAt(0) >> 5).concat([0], [...hrp].map((c) => c.charCodeAt(0) & 31));
  const mod = bech32Polymod(expanded.concat(words, [0, 0, 0, 0, 0, 0])) ^ 1;
  const checksum = [0, 1, 2, 3, 4, 5].map((i) => (mod >>> (5 * (5 - i))) & 31);
  return `${hrp}1${words.concat(checksum).map((w) => BECH32_CHARSET[w]).join("")}`;
}

function addressOf(value) {
  return chain.hrp && /^[0-9a-f]{40}$/.test(value) ? bech32Address(chain.hrp, value) : value;
}

// -- the API ------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, reason, message, trust) {
    super(message);
    this.status = status;
    this.reason = reason;
    this.trust = trust;
  }
}

async function api(path, init) {
  const response = await fetch(path, { headers: { accept: "application/json" }, ...(init || {}) });
  const trust = trustFrom(response);
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    throw new ApiError(response.status, "bad_response", `${path}: not JSON (HTTP ${response.status})`, trust);
  }
  if (!response.ok) {
    const err = (body && body.error) || {};
    const failure = new ApiError(response.status, err.reason || "error", err.message || `HTTP ${response.status}`, trust);
    if (body && typeof body === "object") trustOf.set(failure, trust);
    throw failure;
  }
  if (body && typeof body === "object") trustOf.set(body, trust);
  return body;
}

// -- what was verified -----------------------------------------------------------------------
// `flux-wallet dashboard` serves this page on 127.0.0.1 and answers each read by asking the
// wallet's nodes with proofs, checked by the wallet's light client (Python, written once:
// this file verifies nothing). It labels each answer with a response header:
//   X-Flux-Verified: height=H hash=HEX node=URL    proven against block H
//   X-Flux-Unverified: node=URL                    nothing proves it; as that node served it
//   X-Flux-Verify-Error: REASON (an error body)    no node's answer verified
// A node serving its own dashboard sends none of them: nothing on the page is verified.

const trustOf = new WeakMap(); // answer body (or ApiError) -> its trust, from api()

function trustFrom(response) {
  const failed = response.headers.get("X-Flux-Verify-Error");
  if (failed) return { kind: "failed", reason: failed };
  const verified = response.headers.get("X-Flux-Verified");
  if (verified) return { kind: "verified", ...fieldsOf(verified) };
  const unverified = response.headers.get("X-Flux-Unverified");
  if (unverified) return { kind: "unverified", ...fieldsOf(unverified) };
  return { kind: "node" };
}

function fieldsOf(text) {
  const fields = {};
  for (const part of text.split(" ")) {
    const at = part.indexOf("=");
    if (at > 0) fields[part.slice(0, at)] = part.slice(at + 1);
  }
  return fields;
}

// A line saying how far `what` (a body api() returned) can be believed; `update` an
// existing line in place, so a page that is not redrawn still shows the latest block.
function trustNote(what, body, update) {
  const trust = trustOf.get(body) || { kind: "node" };
  let text;
  if (trust.kind === "verified") {
    text = `✔ ${what}: verified against block ${trust.height} (${short(trust.hash)}) by this wallet's light client; proof from ${trust.node}`;
  } else if (trust.kind === "unverified") {
    const why = trust.reason === "no-verify" ? " (the wallet runs with --no-verify)" : "";
    text = `${what}: not verified${why}: as served by ${trust.node || "no node"}`;
  } else {
    text = `${what}: not verified (served by this node; run \`flux-wallet dashboard\` to verify)`;
  }
  const line = update || el("p", {});
  line.className = `trust ${trust.kind}`;
  line.dataset.trust = trust.kind;
  line.dataset.what = what;
  line.textContent = text;
  return line;
}

// The page shown instead of an answer no node could prove: the reason, never the answer.
function verifyFailure(err) {
  return el(
    "div",
    { class: "trust failed", id: "verify-error", "data-trust": "failed", "data-reason": err.reason },
    el("strong", {}, `Not verified [${err.reason}]`),
    `: ${err.message}. Nothing from this answer is shown.`
  );
}

function isVerifyFailure(err) {
  return err instanceof ApiError && err.trust && err.trust.kind === "failed";
}

// -- the block stream ----------------------------------------------------------------------
// One websocket for the whole page; each page may register `onBlock` to refresh itself.

const chain = { hrp: "" }; // from /params, before the first page renders

const live = {
  recent: [], // {height, time_ms, txs} of the last RECENT_BLOCKS blocks, oldest first
  head: null,
  onBlock: null,
  socket: null,
  retryMs: 500,
};

function remember(block) {
  // Blocks come from two sources, the stream and /blocks, in either order: keep them sorted.
  const recent = live.recent;
  let at = recent.length;
  while (at > 0 && recent[at - 1].height > block.height) at--;
  if (at > 0 && recent[at - 1].height === block.height) return;
  recent.splice(at, 0, block);
  if (recent.length > RECENT_BLOCKS) recent.splice(0, recent.length - RECENT_BLOCKS);
}

function connect() {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/ws`);
  live.socket = socket;
  const badgeEl = document.getElementById("live");
  socket.onopen = () => {
    live.retryMs = 500;
    badgeEl.classList.add("on");
  };
  socket.onmessage = (message) => {
    let block;
    try {
      block = JSON.parse(message.data);
    } catch (_) {
      return;
    }
    live.head = block;
    remember({ height: block.height, time_ms: block.time_ms, txs: block.txs.length });
    badgeEl.textContent = `height ${num(block.height)}`;
    badgeEl.dataset.height = String(block.height);
    if (live.onBlock) {
      live.onBlock(block).catch((err) => {
        if (isVerifyFailure(err)) {
          // The answer stopped verifying: take down what the page showed, say why.
          live.onBlock = null;
          document.getElementById("main").replaceChildren(verifyFailure(err));
        } else {
          console.warn("refresh failed", err);
        }
      });
    }
  };
  socket.onclose = () => {
    badgeEl.classList.remove("on");
    badgeEl.textContent = "reconnecting…";
    // A restarting node comes back; back off so a dead one is not hammered.
    setTimeout(connect, live.retryMs);
    live.retryMs = Math.min(live.retryMs * 2, 10000);
  };
}

// Refresh `page` on every block while it is the one shown (a slow render that finishes
// after the user moved on must not take over the stream).
// `every` > 1 spaces out refreshes of pages that are costly to read (the full node list).
function follow(page, refresh, every = 1) {
  if (!page.isConnected) return;
  let blocks = 0;
  live.onBlock = (block) => (++blocks % every === 0 ? refresh(block) : Promise.resolve());
}

// -- routing -------------------------------------------------------------------------------

const routes = [
  [/^#?\/?$/, "overview", renderOverview],
  [/^#\/nodes$/, "nodes", renderNodes],
  [/^#\/nodes\/([^/]+)$/, "nodes", renderNode],
  [/^#\/apps$/, "apps", renderApps],
  [/^#\/apps\/([^/]+)$/, "apps", renderApp],
  [/^#\/explorer$/, "explorer", renderExplorer],
  [/^#\/blocks\/([^/]+)$/, "explorer", renderBlock],
  [/^#\/txs\/([^/]+)$/, "explorer", renderTx],
  [/^#\/accounts\/([^/]+)$/, "explorer", renderAccount],
  [/^#\/search\/(.+)$/, "explorer", renderSearch],
  [/^#\/deploy$/, "deploy", renderDeploy],
];

let renderSeq = 0;

async function route() {
  const seq = ++renderSeq;
  if (!chain.hrp) {
    try {
      chain.hrp = (await api("/params")).address_hrp;
    } catch (_) {
      // addresses stay hex until the node answers; the pages still work
    }
  }
  const hash = location.hash || "#/";
  live.onBlock = null;
  const main = document.getElementById("main");
  for (const [pattern, nav, render] of routes) {
    const match = hash.match(pattern);
    if (!match) continue;
    for (const a of document.querySelectorAll("[data-nav]")) a.classList.toggle("active", a.dataset.nav === nav);
    const page = el("div", { class: "page", "data-page": nav });
    main.replaceChildren(page);
    document.body.dataset.page = nav;
    try {
      const args = match.slice(1).map((part) => decodeURIComponent(part));
      await render(page, ...args);
    } catch (err) {
      if (seq !== renderSeq) return;
      if (isVerifyFailure(err)) page.replaceChildren(verifyFailure(err));
      else page.append(el("p", { class: "error" }, `Could not load: ${err.message}`));
    }
    return;
  }
  main.replaceChildren(el("p", { class: "error" }, "No such page."));
}

// -- Overview ------------------------------------------------------------------------------

const STAT_CARDS = [
  ["active_nodes", "Active nodes", (v) => num(v)],
  ["total_cores", "Total cores", (v) => num(v)],
  ["total_ram_mb", "Total RAM", (v) => `${num(Math.round(v / 1024))} GB`],
  ["total_storage_gb", "Total storage", (v) => `${num(v)} GB`],
  ["countries", "Countries", (v) => num(v)],
  ["operators", "Operators", (v) => num(v)],
  ["apps_underplaced", "Apps under-placed", (v) => num(v)],
];

function card(key, label, value, shown) {
  return el(
    "div",
    { class: "card", "data-stat": key, "data-value": value },
    el("div", { class: "label" }, label),
    el("div", { class: "value" }, shown)
  );
}

async function renderOverview(page) {
  const note = el("p", {});
  page.append(el("h1", {}, "Network overview"), note);
  const chainCards = el("div", { class: "cards", id: "chain-cards" });
  const statCards = el("div", { class: "cards", id: "stat-cards" });
  const tierTable = el("div", { id: "tier-table" });
  const thisNode = el("div", { id: "this-node" });
  const blockTimeChart = el("div", { id: "chart-block-time" });
  const txRateChart = el("div", { id: "chart-tx-rate" });
  const tiersChart = el("div", { id: "chart-tiers" });
  const charts = {
    blockTime: el("div", { class: "panel" }, el("h2", {}, "Block time, recent blocks (s)"), blockTimeChart),
    txRate: el("div", { class: "panel" }, el("h2", {}, "Tx/s, recent blocks"), txRateChart),
    tiers: el("div", { class: "panel" }, el("h2", {}, "Resources per tier (confirmed nodes)"), tiersChart),
  };
  page.append(
    chainCards,
    el("h2", {}, "Capacity (chain state)"),
    statCards,
    el("h2", {}, "Nodes per tier and state"),
    tierTable,
    el("div", { class: "grid2" }, charts.blockTime, charts.txRate, charts.tiers),
    el("h2", {}, "This node and its agent"),
    thisNode
  );

  const [headers] = await Promise.all([api(`/blocks?limit=${RECENT_BLOCKS}`)]);
  for (const h of headers.headers.slice().reverse()) remember({ height: h.height, time_ms: h.time_ms, txs: h.txs });

  async function refresh() {
    const [status, stats, validators, perTier, agent] = await Promise.all([
      api("/status"),
      api("/network/stats"),
      api("/validators"),
      api("/network/tiers"),
      api("/agent"),
    ]);
    trustNote("network figures", stats, note);
    thisNode.replaceChildren(agentView(agent));
    chainCards.replaceChildren(
      card("height", "Height", status.height, num(status.height)),
      card("block_time_s", "Block time", status.block_time_s, `${status.block_time_s} s`),
      card("validators", "Validators", validators.validators.length, num(validators.validators.length)),
      card("tx_per_s", "Tx/s", status.tx_per_s, String(status.tx_per_s)),
      card("peers", "Peers", status.peers, num(status.peers)),
      card("mempool_txs", "Mempool", status.mempool_txs, `${num(status.mempool_txs)} txs`)
    );
    statCards.replaceChildren(...STAT_CARDS.map(([key, label, show]) => card(key, label, stats[key], show(stats[key]))));
    tierTable.replaceChildren(
      table(
        [{ label: "tier", cell: (r) => r.tier }, { label: "active (confirmed)", num: true, cell: (r) => r.active }]
          .concat(STATES.map((s) => ({ label: s, num: true, cell: (r) => r.states[s] }))),
        TIERS.map((tier) => ({
          tier,
          attrs: { "data-tier": tier },
          active: stats.nodes_by_tier[tier],
          states: perTier.tiers[tier].nodes_by_status,
        })),
        { id: "tiers" }
      ),
      el(
        "p",
        { class: "muted" },
        "All states: ",
        STATES.map((s) => `${s} ${stats.nodes_by_status[s] ?? 0}`).join(" · ")
      )
    );
    drawCharts(perTier.tiers);
    page.dataset.height = String(status.height);
  }

  function drawCharts(tiers) {
    const intervals = [];
    const rates = [];
    for (let i = 1; i < live.recent.length; i++) {
      const a = live.recent[i - 1];
      const b = live.recent[i];
      const seconds = (b.time_ms - a.time_ms) / 1000 / Math.max(1, b.height - a.height);
      intervals.push({ label: b.height, value: seconds });
      rates.push({ label: b.height, value: seconds > 0 ? b.txs / seconds : 0 });
    }
    blockTimeChart.replaceChildren(barChart(intervals, "bar"));
    txRateChart.replaceChildren(barChart(rates, "bar alt"));
    const perTier = TIERS.map((tier) => ({
      tier,
      cores: tiers[tier].cores,
      ram_gb: tiers[tier].ram_mb / 1024,
      disk_tb: tiers[tier].storage_gb / 1000,
    }));
    tiersChart.replaceChildren(tierChart(perTier));
  }

  await refresh();
  follow(page, refresh);
}

// What /health tells uptime checkers, and the workloads the node's agent last reported.
function agentView(agent) {
  if (!agent.expected && !agent.runtime) {
    return el("p", { class: "muted" }, "No agent: this node does not host apps (config.toml agent = false).");
  }
  const health = agent.problem ? el("span", { class: "badge down" }, `unhealthy: ${agent.problem}`) : badge("healthy");
  return el(
    "div",
    {},
    facts([
      ["health", health],
      ["runtime", agent.runtime || "—"],
      ["last report", agent.report_age_s === null ? "never" : `${agent.report_age_s} s ago`],
      ["converged to height", num(agent.height)],
      ["runtime capacity", agent.capacity ? `${agent.capacity.cores} cores · ${num(agent.capacity.ram_mb)} MB RAM · ${num(agent.capacity.disk_gb)} GB disk` : "—"],
    ]),
    table(
      [
        { label: "app", cell: (w) => appLink(w.app) },
        { label: "instance", num: true, cell: (w) => w.instance },
        { label: "component", cell: (w) => w.component },
        { label: "state", cell: (w) => badge(w.state) },
        { label: "restarts", num: true, cell: (w) => w.restarts },
        { label: "answers on", cell: (w) => w.ports.join(", ") },
        { label: "last error", cell: (w) => w.message },
      ],
      agent.workloads.map((w) => ({ ...w, attrs: { "data-workload": `${w.component}_${w.app}` } })),
      { id: "workloads" }
    )
  );
}

function barChart(points, cls) {
  const width = 480;
  const height = 130;
  const pad = 24;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (!points.length) {
    chart.append(svg("text", { x: pad, y: height / 2 }, "waiting for blocks…"));
    return chart;
  }
  const max = Math.max(...points.map((p) => p.value), 1e-9);
  const step = (width - pad) / points.length;
  chart.append(svg("line", { class: "axis", x1: pad, y1: height - pad, x2: width, y2: height - pad }));
  chart.append(svg("text", { x: 0, y: 10 }, max >= 10 ? max.toFixed(0) : max.toFixed(2)));
  chart.append(svg("text", { x: 0, y: height - pad }, "0"));
  points.forEach((p, i) => {
    const h = ((height - 2 * pad) * p.value) / max;
    chart.append(
      svg(
        "rect",
        { class: cls, x: pad + i * step + 1, y: height - pad - h, width: Math.max(1, step - 2), height: h },
        svg("title", {}, `block ${p.label}: ${p.value.toFixed(2)}`)
      )
    );
  });
  chart.append(svg("text", { x: pad, y: height - 6 }, `#${points[0].label}`));
  chart.append(svg("text", { x: width - 40, y: height - 6 }, `#${points[points.length - 1].label}`));
  return chart;
}

function tierChart(perTier) {
  const metrics = [
    ["cores", "cores"],
    ["ram_gb", "RAM (GB)"],
    ["disk_tb", "storage (TB)"],
  ];
  const width = 480;
  const rowH = 34;
  const chart = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${metrics.length * rowH + 10}`, role: "img" });
  metrics.forEach(([key, label], row) => {
    const total = perTier.reduce((s, t) => s + t[key], 0);
    chart.append(svg("text", { x: 0, y: row * rowH + 20 }, label));
    let x = 90;
    for (const t of perTier) {
      const w = total > 0 ? ((width - 170) * t[key]) / total : 0; // room for both labels
      chart.append(
        svg("rect", { class: `tier-${t.tier}`, x, y: row * rowH + 6, width: w, height: 20 },
          svg("title", {}, `${t.tier}: ${Math.round(t[key] * 10) / 10} ${label}`))
      );
      x += w;
    }
    chart.append(svg("text", { x: width - 4, y: row * rowH + 20, "text-anchor": "end" }, num(Math.round(total * 10) / 10)));
  });
  return el("div", {}, chart, el("div", { class: "legend" }, TIERS.map((t) => el("span", {}, el("i", { class: `tier-${t}` }), t))));
}

// -- Nodes ---------------------------------------------------------------------------------

const NODE_COLUMNS = [
  { key: "node_id", label: "node", cell: (n) => nodeLink(n.node_id) },
  { key: "tier", label: "tier", cell: (n) => n.tier },
  { key: "status", label: "state", cell: (n) => badge(n.status) },
  { key: "country", label: "country", cell: (n) => `${n.country} (${n.continent})` },
  { key: "endpoint", label: "endpoint", cell: (n) => n.endpoint },
  { key: "owner", label: "operator", cell: (n) => accountLink(n.owner) },
  { key: "cores", label: "cores", num: true, value: (n) => n.hardware.cores, cell: (n) => num(n.hardware.cores) },
  { key: "ram_mb", label: "RAM MB", num: true, value: (n) => n.hardware.ram_mb, cell: (n) => num(n.hardware.ram_mb) },
  { key: "disk_gb", label: "disk GB", num: true, value: (n) => n.hardware.disk_gb, cell: (n) => num(n.hardware.disk_gb) },
  { key: "paid_total", label: "paid", num: true, cell: (n) => flux(n.paid_total) },
];

async function renderNodes(page) {
  const note = el("p", {});
  page.append(el("h1", {}, "Nodes"), note);
  const state = { sort: "tier", desc: false, nodes: [] };
  const tier = el("select", { id: "filter-tier" }, el("option", { value: "" }, "any"), TIERS.map((t) => el("option", { value: t }, t)));
  const status = el("select", { id: "filter-state" }, el("option", { value: "" }, "any"), STATES.map((s) => el("option", { value: s }, s)));
  const country = el("input", { id: "filter-country", placeholder: "DE", size: 6 });
  const operator = el("input", { id: "filter-operator", placeholder: "address", size: 24 });
  const count = el("span", { class: "muted", id: "node-count" });
  const holder = el("div", {});
  page.append(
    el(
      "div",
      { class: "filters" },
      el("label", {}, "tier", tier),
      el("label", {}, "state", status),
      el("label", {}, "country", country),
      el("label", {}, "operator", operator),
      el("label", {}, " ", count)
    ),
    holder
  );

  function draw() {
    const wantCountry = country.value.trim().toUpperCase();
    const wantOperator = operator.value.trim().toLowerCase();
    const rows = state.nodes.filter(
      (n) =>
        (!tier.value || n.tier === tier.value) &&
        (!status.value || n.status === status.value) &&
        (!wantCountry || n.country === wantCountry) &&
        (!wantOperator || n.owner.toLowerCase().includes(wantOperator))
    );
    const column = NODE_COLUMNS.find((c) => c.key === state.sort);
    const value = column.value || ((n) => n[column.key]);
    const order = (a, b) => {
      const x = value(a);
      const y = value(b);
      const byTier = column.key === "tier" ? TIERS.indexOf(x) - TIERS.indexOf(y) : 0;
      const cmp = byTier || (x < y ? -1 : x > y ? 1 : 0) || (a.node_id < b.node_id ? -1 : 1);
      return state.desc ? -cmp : cmp;
    };
    rows.sort(order);
    count.textContent = `${rows.length} of ${state.nodes.length} nodes`;
    const head = el(
      "tr",
      {},
      NODE_COLUMNS.map((c) =>
        el(
          "th",
          {
            class: `sortable ${c.num ? "num" : ""} ${state.sort === c.key ? (state.desc ? "sorted-desc" : "sorted-asc") : ""}`,
            "data-sort": c.key,
            onclick: () => {
              state.desc = state.sort === c.key ? !state.desc : false;
              state.sort = c.key;
              draw();
            },
          },
          c.label
        )
      )
    );
    const body = rows.map((n) =>
      el("tr", { "data-node": n.node_id }, NODE_COLUMNS.map((c) => el("td", { class: c.num ? "num" : "" }, c.cell(n))))
    );
    holder.replaceChildren(el("table", { id: "nodes" }, el("thead", {}, head), el("tbody", {}, body)));
  }

  for (const input of [tier, status, country, operator]) {
    input.addEventListener("input", draw);
    input.addEventListener("change", draw);
  }
  let shown = "";
  async function refresh() {
    const list = await api("/nodes");
    trustNote("node list", list, note);
    state.nodes = list.nodes;
    const key = JSON.stringify(state.nodes);
    if (key === shown) return;
    shown = key;
    draw();
  }
  await refresh();
  follow(page, refresh, 5); // up to 1,000 nodes a read: every 5 blocks is live enough
}

const HISTORY_EVERY = 10; // blocks between re-reads of a node's history (a scan of blocks)

async function renderNode(page, id) {
  const note = el("p", {});
  const historyNote = el("p", {});
  let shown = "";
  let history = null;
  let blocks = 0;
  async function refresh() {
    const historyDue = history === null || blocks++ % HISTORY_EVERY === 0;
    const [node, fresh] = await Promise.all([
      api(`/nodes/${enc(id)}`),
      historyDue ? api(`/nodes/${enc(id)}/history`) : Promise.resolve(history),
    ]);
    history = fresh;
    trustNote("node record, load and what it runs", node, note);
    trustNote("history (blocks read back from the head)", history, historyNote);
    const key = JSON.stringify([node, history.confirms, history.uptime_reports, history.events]);
    if (key === shown) return; // unchanged: keep the reader's selection and scroll
    shown = key;
    const bench = node.benchmark;
    const payouts = history.events.filter((e) => e.kind === "paid");
    const others = history.events.filter((e) => e.kind !== "paid");
    fill(
      page,
      el("h1", {}, "Node ", el("span", { class: "mono" }, node.node_id), " ", badge(node.status)),
      note,
      el(
        "div",
        { class: "grid2" },
        el(
          "div",
          { class: "panel" },
          facts([
            ["tier", node.tier],
            ["operator", accountLink(node.owner)],
            ["collateral", flux(node.collateral)],
            ["endpoint", node.endpoint],
            ["location", `${node.country}, ${node.continent}`],
            ["node key", el("span", { class: "mono" }, node.node_key)],
            ["registered at", blockLink(node.registered_height)],
            ["state since", blockLink(node.status_height)],
            ["last confirm", node.last_confirm_height ? blockLink(node.last_confirm_height) : "never"],
            ["software", node.version || "—"],
            ["paid in total", flux(node.paid_total)],
          ])
        ),
        el(
          "div",
          { class: "panel" },
          el("h2", {}, "Hardware and benchmark"),
          table(
            [
              { label: "", cell: (r) => r.what },
              { label: "declared", num: true, cell: (r) => r.declared },
              { label: "benchmark", num: true, cell: (r) => r.measured },
            ],
            [
              { what: "cores", declared: node.hardware.cores, measured: bench ? bench.cores : "—" },
              { what: "threads", declared: "", measured: bench ? bench.threads : "—" },
              { what: "RAM MB", declared: num(node.hardware.ram_mb), measured: bench ? num(bench.ram_mb) : "—" },
              { what: "disk GB", declared: num(node.hardware.disk_gb), measured: bench ? num(bench.disk_gb) : "—" },
              { what: "disk write MB/s", declared: "", measured: bench ? bench.disk_write_mbps : "—" },
              { what: "cpu score", declared: "", measured: bench ? bench.cpu_score : "—" },
              { what: "bandwidth Mbit/s", declared: "", measured: bench ? bench.bandwidth_mbit : "—" },
            ]
          )
        )
      ),
      el("h2", {}, "What it runs"),
      table(
        [
          { label: "app", cell: (a) => appLink(a.app) },
          { label: "instance", num: true, cell: (a) => a.instance },
          { label: "components", cell: (a) => (a.spec ? a.spec.components.map((c) => c.image).join(", ") : "") },
        ],
        node.assignments,
        { id: "assignments" }
      ),
      el("p", { class: "muted" }, `History below covers blocks ${history.from_height}–${history.to_height}.`),
      historyNote,
      el(
        "div",
        { class: "grid2" },
        el(
          "div",
          {},
          el("h2", {}, "Confirmations"),
          table(
            [
              { label: "height", cell: (c) => blockLink(c.height) },
              { label: "tx", cell: (c) => txLink(c.tx) },
              { label: "version", cell: (c) => c.version },
              { label: "cpu score", num: true, cell: (c) => c.benchmark.cpu_score },
            ],
            history.confirms
          )
        ),
        el(
          "div",
          {},
          el("h2", {}, "Uptime reports about it"),
          table(
            [
              { label: "height", cell: (r) => blockLink(r.height) },
              { label: "epoch", num: true, cell: (r) => r.epoch },
              { label: "checker", cell: (r) => nodeLink(r.checker) },
              { label: "verdict", cell: (r) => badge(r.up ? "up" : "down") },
              { label: "latency ms", num: true, cell: (r) => r.latency_ms },
            ],
            history.uptime_reports.slice(0, 50)
          )
        ),
        el(
          "div",
          {},
          el("h2", {}, "Payouts"),
          table(
            [
              { label: "height", cell: (e) => blockLink(e.height) },
              { label: "amount", num: true, cell: (e) => flux(e.amount) },
              { label: "why", cell: (e) => payReason(e.reason) },
            ],
            payouts.slice(0, 50)
          )
        ),
        el("div", {}, el("h2", {}, "Other events"), eventTable(others.slice(0, 50)))
      )
    );
  }
  await refresh();
  follow(page, refresh);
}

function payReason(code) {
  return { 1: "proposer", 2: "tier payment queue", 3: "app hosting", 4: "refund", 5: "collateral" }[code] || String(code);
}

function eventTable(events) {
  return table(
    [
      { label: "height", cell: (e) => blockLink(e.height) },
      { label: "event", cell: (e) => e.kind.replaceAll("_", " ") },
      { label: "details", cell: (e) => eventDetails(e) },
    ],
    events,
    { class: "events" }
  );
}

function eventDetails(event) {
  const parts = [];
  for (const [key, value] of Object.entries(event)) {
    if (key === "kind" || key === "height") continue;
    if (key === "node_id") parts.push("node ", nodeLink(value), " ");
    else if (key === "address" || key === "owner") parts.push(`${key} `, accountLink(addressOf(value)), " ");
    else if (key === "name") parts.push("app ", appLink(value), " ");
    else if (key === "amount" || key === "escrow" || key === "refund" || key === "burned" || key === "collateral") parts.push(`${key} ${flux(value)} `);
    else if (key === "reason" && event.kind === "paid") parts.push(`for ${payReason(value)} `);
    else parts.push(`${key} ${typeof value === "string" ? short(value, 10) : value} `);
  }
  return el("span", {}, parts);
}

// -- Apps ----------------------------------------------------------------------------------

async function renderApps(page) {
  const note = el("p", {});
  page.append(el("h1", {}, "Apps"), note, el("p", {}, link("#/deploy", "Prepare a new deployment →")));
  const holder = el("div", {});
  page.append(holder);
  let shown = "";
  async function refresh() {
    const answer = await api("/apps");
    trustNote("app list", answer, note);
    const list = answer.apps;
    const key = JSON.stringify(list);
    if (key === shown) return;
    shown = key;
    holder.replaceChildren(
      table(
        [
          { label: "app", cell: (a) => appLink(a.name) },
          { label: "description", cell: (a) => a.spec.description },
          { label: "owner", cell: (a) => accountLink(a.owner) },
          { label: "instances", num: true, cell: (a) => `${a.placed} / ${a.wanted}` },
          { label: "status", cell: (a) => badge(a.status) },
          { label: "escrow", num: true, cell: (a) => flux(a.escrow) },
          { label: "expires at", num: true, cell: (a) => blockLink(a.expire_height) },
        ],
        list.map((a) => ({ ...a, attrs: { "data-app": a.name } })),
        { id: "apps" }
      )
    );
  }
  await refresh();
  follow(page, refresh);
}

async function renderApp(page, name) {
  const note = el("p", {});
  const eventsNote = el("p", {});
  let shown = "";
  function showExpiry(expireHeight) {
    const span = document.getElementById("expires-in");
    const height = live.head ? live.head.height : null;
    if (span && height !== null) span.textContent = ` (in ${num(Math.max(0, expireHeight - height))} blocks)`;
  }
  async function refresh() {
    let app;
    try {
      app = await api(`/apps/${enc(name)}`);
    } catch (err) {
      if (err.status !== 404) throw err;
      // Not registered (yet): stay on the page and look again at every block.
      shown = "";
      fill(
        page,
        el("h1", {}, "App ", el("span", { id: "app-name" }, name)),
        trustNote("its absence", err, note),
        el("p", { class: "notice", id: "app-missing" }, `No app named “${name}” on chain yet; this page updates when one is registered.`)
      );
      return;
    }
    const eventsAnswer = await api(`/apps/${enc(name)}/events`);
    const events = eventsAnswer.events;
    trustNote("app, placement and its nodes", app, note);
    trustNote("events (blocks read back from the head)", eventsAnswer, eventsNote);
    showExpiry(app.expire_height);
    // Unchanged data leaves the page alone, so a reader's selection and scroll survive blocks.
    const key = JSON.stringify([app, events]);
    if (key === shown) return;
    shown = key;
    const spec = app.spec;
    fill(
      page,
      el("h1", {}, "App ", el("span", { id: "app-name" }, app.name), " ", badge(app.status)),
      note,
      el("p", { class: "text-block", id: "app-description" }, spec.description),
      app.underplaced_reason
        ? el("p", { class: "notice", id: "underplaced" }, `Under-placed: ${app.placed} of ${app.wanted} instances run. Why: ${explainUnderplaced(app.underplaced_reason)}`)
        : null,
      el(
        "div",
        { class: "grid2" },
        el(
          "div",
          { class: "panel" },
          facts([
            ["owner", accountLink(app.owner)],
            ["instances", `${app.placed} placed of ${app.wanted} wanted`],
            ["escrow left", el("span", { id: "app-escrow" }, flux(app.escrow))],
            ["refundable", flux(app.refundable)],
            ["paid to nodes", flux(app.paid_total)],
            ["registered at", blockLink(app.registered_height)],
            ["expires at", [blockLink(app.expire_height), el("span", { id: "expires-in" })]],
            ["minimum tier", spec.min_tier],
            ["geolocation", geoText(spec.geolocation)],
            ["contacts", spec.contacts.join(", ") || "—"],
            ["domains", el("span", { id: "app-domains" }, app.domains.join(", ") || "—")],
          ])
        ),
        el(
          "div",
          {},
          el("h2", {}, "Instances"),
          table(
            [
              { label: "#", num: true, cell: (i) => i.index },
              { label: "node", cell: (i) => nodeLink(i.node_id) },
              { label: "endpoint", cell: (i) => i.endpoint },
              { label: "country", cell: (i) => i.country },
              { label: "host's report", cell: (i) => agentReport(i.agent) },
            ],
            app.instances.map((i) => ({ ...i, attrs: { class: "instance", "data-node": i.node_id } })),
            { id: "instances" }
          )
        )
      ),
      el("h2", {}, "Components"),
      table(
        [
          { label: "name", cell: (c) => c.name },
          { label: "image", cell: (c) => el("span", { class: "mono" }, c.image) },
          { label: "ports", cell: (c) => el("div", { class: "text-block" }, c.ports.map(portText).join("\n")) },
          { label: "cpu / RAM / disk", cell: (c) => `${c.cpu} cores, ${num(c.ram_mb)} MB, ${num(c.disk_gb)} GB` },
          { label: "environment", cell: (c) => el("div", { class: "mono text-block" }, c.environment.join("\n")) },
          { label: "command", cell: (c) => el("span", { class: "mono" }, c.command.join(" ")) },
          { label: "data", cell: (c) => c.data_path },
          {
            label: "volumes",
            cell: (c) => (c.volumes || []).map((v) => `${v.mount} (${v.mode})`).join(", "),
          },
        ],
        spec.components,
        { id: "components" }
      ),
      // The spec as a file: a starting point for `flux-wallet app update`.
      el("details", {}, el("summary", {}, "Spec file (JSON)"), el("pre", { id: "app-spec" }, JSON.stringify(spec, null, 2))),
      el("h2", {}, "Events"),
      eventsNote,
      eventTable(events)
    );
    showExpiry(app.expire_height);
  }
  await refresh();
  follow(page, refresh);
}

function explainUnderplaced(reason) {
  const why = {
    capacity: "not enough eligible nodes with free cpu, RAM and disk",
    geolocation: "too few eligible nodes in the allowed locations",
    tier: "too few eligible nodes of the minimum tier",
    pinned: "the pinned nodes are not all eligible",
    no_eligible_nodes: "no confirmed, up node can take it",
  }[reason];
  return why ? `${reason} (${why})` : reason;
}

function geoText(geo) {
  const parts = [];
  if (geo.allow.length) parts.push(`only ${geo.allow.join(", ")}`);
  if (geo.deny.length) parts.push(`not ${geo.deny.join(", ")}`);
  return parts.join("; ") || "anywhere";
}

// -- Explorer ------------------------------------------------------------------------------

async function renderExplorer(page) {
  const form = el(
    "form",
    { class: "filters", id: "explorer-search" },
    el("input", { id: "explorer-q", size: 60, placeholder: "height, block or tx hash, address, app name, node id or endpoint" }),
    el("button", { type: "submit" }, "Search")
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const q = form.querySelector("input").value.trim();
    if (q) location.hash = `#/search/${enc(q)}`;
  });
  const holder = el("div", {});
  const note = el("p", {});
  page.append(el("h1", {}, "Explorer"), form, el("h2", {}, "Latest blocks"), note, holder);
  async function refresh() {
    const answer = await api("/blocks?limit=25");
    trustNote("latest blocks", answer, note);
    const headers = answer.headers;
    holder.replaceChildren(
      table(
        [
          { label: "height", cell: (h) => blockLink(h.height) },
          { label: "hash", cell: (h) => link(`#/blocks/${enc(h.hash)}`, short(h.hash), { class: "mono" }) },
          { label: "time", cell: (h) => new Date(h.time_ms).toISOString().replace("T", " ").slice(0, 19) },
          { label: "txs", num: true, cell: (h) => h.txs },
          { label: "proposer", cell: (h) => nodeLink(h.proposer) },
        ],
        headers,
        { id: "blocks" }
      )
    );
  }
  await refresh();
  follow(page, refresh);
}

async function renderBlock(page, ref) {
  const block = await api(`/blocks/${enc(ref)}`);
  const h = block.header;
  page.append(
    el("h1", {}, `Block ${num(h.height)}`),
    trustNote("header (its commit's signatures), txs (against the tx root) and events (against the events root)", block),
    el(
      "p",
      {},
      h.height > 1 ? link(`#/blocks/${h.height - 1}`, "← previous") : null,
      " ",
      link(`#/blocks/${h.height + 1}`, "next →")
    ),
    el(
      "div",
      { class: "panel" },
      facts([
        ["hash", el("span", { class: "mono" }, h.hash)],
        ["time", `${new Date(h.time_ms).toISOString()} (${ago(h.time_ms)})`],
        ["proposer", nodeLink(h.proposer)],
        ["previous", link(`#/blocks/${enc(h.prev_hash)}`, h.prev_hash, { class: "mono" })],
        ["state root", el("span", { class: "mono" }, h.state_root)],
        ["tx root", el("span", { class: "mono" }, h.tx_root)],
        ["events root", el("span", { class: "mono" }, h.events_root)],
        ["commit", block.commit ? `round ${block.commit.round}, ${block.commit.signers.length} signatures` : "not yet"],
      ])
    ),
    el("h2", {}, `Transactions (${block.txs.length})`),
    table(
      [
        { label: "tx", cell: (t) => txLink(t.id) },
        { label: "kind", cell: (t) => t.kind.replaceAll("_", " ") },
        { label: "sender", cell: (t) => accountLink(t.sender) },
        { label: "fee", num: true, cell: (t) => flux(t.fee) },
      ],
      block.txs
    ),
    el("h2", {}, `Events (${block.events.length})`),
    eventTable(block.events.map((e) => ({ height: h.height, ...e })))
  );
}

async function renderTx(page, id) {
  const tx = await api(`/txs/${enc(id)}`);
  page.append(
    el("h1", {}, "Transaction ", el("span", { class: "mono" }, short(id, 12)), " ", badge(tx.status)),
    trustNote(
      tx.status === "confirmed"
        ? "inclusion, tx and each event shown (not that none is missing: the block page shows all of the block's events)"
        : `status “${tx.status}” (what the node claims: nothing on chain proves it)`,
      tx
    )
  );
  const pairs = [["id", el("span", { class: "mono" }, tx.id)], ["status", tx.status]];
  if (tx.status === "confirmed") pairs.push(["block", blockLink(tx.height)], ["index in block", tx.index]);
  if (tx.status === "rejected" || tx.status === "held" || tx.status === "evicted") pairs.push(["reason", `${tx.reason}: ${tx.message}`]);
  if (tx.tx) {
    pairs.push(
      ["kind", tx.tx.kind.replaceAll("_", " ")],
      ["sender", accountLink(tx.tx.sender)],
      ["nonce", tx.tx.nonce],
      ["fee", flux(tx.tx.fee)],
      ["size", `${num(tx.tx.size)} bytes`]
    );
  }
  page.append(el("div", { class: "panel" }, facts(pairs)));
  if (tx.tx) {
    // The payload as JSON text (a <pre>'s textContent): names and strings stay inert.
    page.append(el("h2", {}, "Payload"), el("pre", {}, JSON.stringify(tx.tx.payload, null, 2)));
    page.append(el("h2", {}, "Events"), eventTable((tx.events || []).map((e) => ({ height: tx.height, ...e }))));
  }
}

async function renderAccount(page, address) {
  const [account, nodes, apps] = await Promise.all([api(`/accounts/${enc(address)}`), api("/nodes"), api("/apps")]);
  const mine = nodes.nodes.filter((n) => n.owner === account.address);
  const myApps = apps.apps.filter((a) => a.owner === account.address);
  page.append(
    el("h1", {}, "Account ", el("span", { class: "mono" }, account.address)),
    el("div", { id: "trust" }, trustNote("balance and nonce", account), trustNote("nodes and apps lists", nodes)),
    el(
      "div",
      { class: "panel" },
      facts([
        ["balance", el("span", { id: "balance" }, flux(account.balance))],
        ["nonce (txs sent)", account.nonce],
        ["nodes operated", mine.length],
        ["apps owned", myApps.length],
      ])
    ),
    el("h2", {}, "Nodes"),
    table(
      [
        { label: "node", cell: (n) => nodeLink(n.node_id) },
        { label: "tier", cell: (n) => n.tier },
        { label: "state", cell: (n) => badge(n.status) },
        { label: "collateral", num: true, cell: (n) => flux(n.collateral) },
      ],
      mine
    ),
    el("h2", {}, "Apps"),
    table(
      [
        { label: "app", cell: (a) => appLink(a.name) },
        { label: "instances", num: true, cell: (a) => `${a.placed} / ${a.wanted}` },
        { label: "escrow", num: true, cell: (a) => flux(a.escrow) },
      ],
      myApps
    )
  );
}

const SEARCH_TARGETS = { block: "#/blocks/", tx: "#/txs/", account: "#/accounts/", node: "#/nodes/", app: "#/apps/" };

async function renderSearch(page, query) {
  page.append(el("h1", {}, "Search: ", el("span", { class: "mono" }, query)));
  const found = await api(`/search?q=${enc(query)}`);
  page.append(trustNote("search", found));
  if (found.results.length === 1) {
    const only = found.results[0];
    location.replace(SEARCH_TARGETS[only.kind] + enc(only.ref));
    return;
  }
  if (!found.results.length) {
    page.append(el("p", { class: "notice", id: "no-results" }, "Nothing on chain matches this: try a height, a block or tx hash, an address, an app name, a node id or its endpoint."));
    return;
  }
  page.append(
    el(
      "ul",
      { id: "results" },
      found.results.map((r) => el("li", {}, `${r.kind}: `, link(SEARCH_TARGETS[r.kind] + enc(r.ref), r.ref)))
    )
  );
}

// -- Deploy --------------------------------------------------------------------------------
// The form only collects what the user typed; the node checks it with the chain's own
// rules (POST /apps/validate) and prices it as flux-wallet does. No rule is repeated here.

function field(label, path, input, hint) {
  input.dataset.path = path;
  return el(
    "label",
    { class: "field", "data-field": path },
    el("span", {}, label, " ", el("code", { class: "path" }, path)),
    input,
    hint ? el("small", { class: "muted" }, hint) : null,
    el("ul", { class: "problems", "data-problems": path })
  );
}

function numberOrText(text) {
  const t = text.trim();
  if (t === "") return undefined;
  return /^[0-9]+$/.test(t) ? Number(t) : t; // anything else goes as typed: the node names it
}

// One port of a spec as the deploy form writes it: "8080:80/udp blog.example.com".
function portText(p) {
  const protocol = p.protocol === "tcp" ? "" : `/${p.protocol}`;
  return [`${p.host}:${p.container}${protocol}`, ...p.domains].join(" ");
}

// A line of the deploy form's ports: "HOST:CONTAINER[/tcp|udp|both] [domain …]" -> the
// per-port form of the spec. Whatever does not parse goes as typed: the node names it.
function portOf(line) {
  const [first, ...domains] = line.trim().split(/\s+/);
  const [mapping, protocol] = first.split("/");
  const [host, container] = mapping.split(":");
  const port = { host: numberOrText(host), container: numberOrText(container || "") };
  if (protocol !== undefined) port.protocol = protocol;
  if (domains.length) port.domains = domains;
  return port;
}

function listOf(text, convert) {
  return text
    .split(/[\s,]+/)
    .filter((part) => part !== "")
    .map(convert);
}

function linesOf(text) {
  return text.split("\n").filter((line) => line.trim() !== "");
}

function componentFieldset(index, values) {
  const v = values || {};
  const base = `components[${index}]`;
  const box = el(
    "fieldset",
    { class: "component", "data-index": index, "data-path": base },
    el("legend", {}, `Component ${index + 1}`),
    el(
      "div",
      { class: "row" },
      field("name", `${base}.name`, el("input", { name: "name", value: v.name || "" })),
      field("image", `${base}.image`, el("input", { name: "image", value: v.image || "", placeholder: "nginx:1.27" }))
    ),
    field("description", `${base}.description`, el("input", { name: "description", value: "" })),
    el(
      "div",
      { class: "row" },
      field("cpu (cores)", `${base}.cpu`, el("input", { name: "cpu", value: v.cpu || "0.5" })),
      field("RAM (MB)", `${base}.ram_mb`, el("input", { name: "ram_mb", value: v.ram_mb || "256" })),
      field("disk (GB)", `${base}.disk_gb`, el("input", { name: "disk_gb", value: v.disk_gb || "1" }))
    ),
    el(
      "div",
      { class: "row" },
      field("data path", `${base}.data_path`, el("input", { name: "data_path", value: "/data" }))
    ),
    field(
      "volumes (one a line: a mount path, then `replicated` to keep it on every host: docs/apps.md)",
      `${base}.volumes`,
      el("textarea", { name: "volumes", rows: 2, placeholder: "/var/lib/kv replicated" })
    ),
    field(
      "ports (one a line: host:container, then /udp or /both if not tcp, then its domains)",
      `${base}.ports`,
      el("textarea", { name: "ports", rows: 2, placeholder: "31000:80 blog.example.com", value: v.ports || "" })
    ),
    field("environment (KEY=value, one a line)", `${base}.environment`, el("textarea", { name: "environment", rows: 3 })),
    field("command (one argument a line; empty keeps the image's)", `${base}.command`, el("textarea", { name: "command", rows: 2 }))
  );
  return box;
}

async function renderDeploy(page) {
  const params = await api("/params");
  const components = el("div", { id: "components" });
  const form = el(
    "form",
    { id: "deploy-form", novalidate: true },
    el(
      "fieldset",
      {},
      el("legend", {}, "App"),
      el(
        "div",
        { class: "row" },
        field("name", "name", el("input", { name: "name", value: "hello" }), "DNS-safe: a-z, 0-9 and -"),
        field("instances", "instances", el("input", { name: "instances", value: "3" })),
        field("expire (blocks)", "expire", el("input", { name: "expire", value: "1000" }))
      ),
      field("description", "description", el("input", { name: "description", value: "" })),
      field("owner (empty: the signing account)", "owner", el("input", { name: "owner", placeholder: `${params.address_hrp}1…` })),
      field("contacts (comma-separated)", "contacts", el("input", { name: "contacts" })),
      el(
        "div",
        { class: "row" },
        field("minimum tier", "min_tier", el("select", { name: "min_tier" }, TIERS.map((t) => el("option", { value: t }, t)))),
        // not part of the spec: only completes the command line below
        el("label", { class: "field" }, el("span", {}, "wallet account (for the command)"), el("input", { name: "account", placeholder: "account4" }))
      )
    ),
    el(
      "fieldset",
      { "data-path": "geolocation" },
      el("legend", {}, "Where it may run"),
      el(
        "div",
        { class: "row" },
        field("allow (EU, EU_DE …)", "geolocation.allow", el("input", { name: "allow" })),
        field("deny", "geolocation.deny", el("input", { name: "deny" }))
      ),
      field("pinned nodes (node ids; empty: any node)", "pinned_nodes", el("input", { name: "pinned_nodes" })),
      el("ul", { class: "problems", "data-problems": "geolocation" })
    ),
    components,
    el("p", {}, el("button", { type: "button", class: "secondary", id: "add-component" }, "Add component"), " ",
      el("button", { type: "button", class: "secondary", id: "remove-component" }, "Remove last component")),
    el("ul", { class: "problems", "data-problems": "components" })
  );
  components.append(componentFieldset(0, { name: "web", image: "nginx:1.27", ports: "31000:80" }));

  const result = el(
    "div",
    { class: "panel", id: "deploy-result" },
    el("h2", {}, "Check and price"),
    el("p", { id: "verdict", class: "muted" }, "checking…"),
    el("div", { class: "price", id: "price" }, "—"),
    el("p", { class: "muted", id: "price-detail" }),
    el("h2", {}, "All problems"),
    el("ul", { class: "problems", id: "all-problems" }),
    el("h2", {}, "Spec file"),
    el("p", {}, el("a", { id: "download", download: "app.json", href: "#/deploy" }, "download app.json")),
    el("pre", { id: "spec-file" }),
    el("h2", {}, "Register it"),
    el("p", { class: "muted" }, "Run this where your wallet is; it signs there and waits until the chain places the app."),
    el("pre", { id: "command" })
  );
  page.append(
    el("h1", {}, "Deploy an app"),
    el("p", { class: "muted" }, "The node checks this spec with the chain's own rules and prices it as flux-wallet does. Nothing is signed or sent from this page."),
    el("div", { class: "form" }, form, result)
  );

  document.getElementById("add-component").addEventListener("click", () => {
    const n = components.children.length;
    components.append(componentFieldset(n, { name: `c${n + 1}` }));
    schedule();
  });
  document.getElementById("remove-component").addEventListener("click", () => {
    if (components.children.length > 1) components.lastElementChild.remove();
    schedule();
  });

  function buildSpec() {
    const top = (name) => form.querySelector(`[name="${name}"]`).value;
    const spec = {
      name: top("name").trim() === "" ? undefined : top("name"),
      description: top("description") || undefined,
      owner: top("owner").trim() || undefined,
      contacts: listOf(top("contacts"), (c) => c),
      instances: numberOrText(top("instances")),
      expire: numberOrText(top("expire")),
      min_tier: top("min_tier"),
      geolocation: { allow: listOf(top("allow"), (c) => c), deny: listOf(top("deny"), (c) => c) },
      pinned_nodes: listOf(top("pinned_nodes"), (c) => c),
      components: [...components.children].map((box) => {
        const get = (name) => box.querySelector(`[name="${name}"]`).value;
        return {
          name: get("name"),
          description: get("description") || undefined,
          image: get("image"),
          ports: linesOf(get("ports")).map(portOf),
          environment: linesOf(get("environment")),
          command: linesOf(get("command")),
          data_path: get("data_path"),
          volumes: linesOf(get("volumes")).map(volumeOf),
          cpu: get("cpu").trim(),
          ram_mb: numberOrText(get("ram_mb")),
          disk_gb: numberOrText(get("disk_gb")),
        };
      }),
    };
    if (!spec.contacts.length) delete spec.contacts;
    if (!spec.pinned_nodes.length) delete spec.pinned_nodes;
    if (!spec.geolocation.allow.length && !spec.geolocation.deny.length) delete spec.geolocation;
    return JSON.parse(JSON.stringify(spec)); // drops the undefined (left-out) fields
  }

  // "/var/lib/kv replicated" -> {mount, mode}; a bare path is a local volume
  function volumeOf(line) {
    const [mount, mode] = line.trim().split(/\s+/);
    return { mount, mode: mode || "local" };
  }

  function problemHolder(path) {
    // The most specific field that owns `path`: components[0].environment[2] belongs to
    // components[0].environment, geolocation[3] to geolocation, and so on upwards.
    let p = path;
    for (;;) {
      const holder = form.querySelector(`[data-problems="${CSS.escape(p)}"]`);
      if (holder) return holder;
      const cut = Math.max(p.lastIndexOf("["), p.lastIndexOf("."));
      if (cut <= 0) return null;
      p = p.slice(0, cut);
    }
  }

  let seq = 0;
  let timer = null;
  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(check, 250);
  }

  async function check() {
    if (!page.isConnected) return; // an edit's timer that outlived the page
    const mine = ++seq;
    const spec = buildSpec();
    let verdict;
    try {
      verdict = await api("/apps/validate", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ spec }),
      });
    } catch (err) {
      if (mine === seq && page.isConnected) document.getElementById("verdict").textContent = `The node refused the request: ${err.reason}: ${err.message}`;
      return;
    }
    if (mine !== seq) return; // a newer edit's answer is on its way
    if (!page.isConnected) return; // the user left the page while the node answered
    for (const holder of page.querySelectorAll("[data-problems]")) holder.replaceChildren();
    for (const f of page.querySelectorAll(".has-problem")) f.classList.remove("has-problem");
    const all = document.getElementById("all-problems");
    all.replaceChildren();
    for (const problem of verdict.problems) {
      const line = () =>
        el("li", { class: "problem", "data-path": problem.path, "data-code": problem.code }, el("code", {}, problem.path), `: ${problem.message} [${problem.code}]`);
      const holder = problemHolder(problem.path);
      if (holder) {
        holder.append(line());
        if (holder.parentElement.classList.contains("field")) holder.parentElement.classList.add("has-problem");
      }
      all.append(line());
    }
    const verdictEl = document.getElementById("verdict");
    verdictEl.dataset.valid = String(verdict.valid);
    const priceEl = document.getElementById("price");
    if (verdict.valid) {
      verdictEl.textContent = "Valid: the chain will accept this spec." + (verdict.owner_filled_by_wallet ? " flux-wallet fills in the signing account as owner." : "");
      priceEl.textContent = flux(verdict.price);
      priceEl.dataset.units = String(verdict.price);
      document.getElementById("price-detail").textContent =
        `${flux(verdict.per_instance_period)} per instance per ${num(verdict.price_period)} blocks; ${verdict.instances} instances for ${num(verdict.blocks)} blocks.`;
    } else {
      verdictEl.textContent = `${verdict.problems.length} problem(s): fix them to see the price.`;
      priceEl.textContent = "—";
      delete priceEl.dataset.units;
      document.getElementById("price-detail").textContent = "";
    }
    const fileName = `${spec.name && /^[a-z0-9-]+$/.test(spec.name) ? spec.name : "app"}.json`;
    const text = JSON.stringify(spec, null, 2) + "\n";
    document.getElementById("spec-file").textContent = text;
    const download = document.getElementById("download");
    if (download.href.startsWith("blob:")) URL.revokeObjectURL(download.href);
    download.href = URL.createObjectURL(new Blob([text], { type: "application/json" }));
    download.download = fileName;
    download.textContent = `download ${fileName}`;
    const account = form.querySelector('[name="account"]').value.trim();
    document.getElementById("command").textContent =
      `flux-wallet app validate ${fileName}\nflux-wallet app register ${fileName}` + (account ? ` --account ${account}` : "");
  }

  form.addEventListener("input", schedule);
  form.addEventListener("change", schedule);
  form.addEventListener("submit", (event) => event.preventDefault());
  await check();
}

// -- start ---------------------------------------------------------------------------------

document.getElementById("search").addEventListener("submit", (event) => {
  event.preventDefault();
  const box = document.getElementById("search-q");
  const q = box.value.trim();
  box.value = "";
  if (q) location.hash = `#/search/${enc(q)}`;
});
window.addEventListener("hashchange", route);
connect();
route();
