// The tidings dashboard: live topics, groups, dead letters, a live tail, event detail and
// causal trees. Event content is only ever put into the page as text (textContent).
"use strict";

const $ = (id) => document.getElementById(id);
const HISTORY = 60; // seconds of rate history per topic
const rates = new Map(); // topic -> { last: events, at: ms, points: [] }
let tail = null;
let shownEvent = null;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function button(label, onClick, className) {
  const node = el("button", label, className);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

async function api(method, path) {
  const response = await fetch(path, { method, credentials: "same-origin" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${method} ${path}: ${response.status}`);
  return body;
}

function sparkline(points) {
  const canvas = el("canvas");
  canvas.width = 120;
  canvas.height = 24;
  const context = canvas.getContext("2d");
  const top = Math.max(1, ...points);
  context.strokeStyle = "#2f6fdf";
  context.beginPath();
  points.forEach((value, i) => {
    const x = (i / Math.max(1, HISTORY - 1)) * canvas.width;
    const y = canvas.height - 2 - (value / top) * (canvas.height - 4);
    if (i === 0) context.moveTo(x, y);
    else context.lineTo(x, y);
  });
  context.stroke();
  return canvas;
}

function renderTopics(topics) {
  const now = Date.now();
  const rows = topics.map((topic) => {
    const seen = rates.get(topic.name) || { last: topic.events, at: now, points: [] };
    const seconds = Math.max(0.001, (now - seen.at) / 1000);
    const rate = seen.at === now ? 0 : Math.max(0, (topic.events - seen.last) / seconds);
    seen.points = [...seen.points, rate].slice(-HISTORY);
    seen.last = topic.events;
    seen.at = now;
    rates.set(topic.name, seen);
    const tr = el("tr");
    tr.dataset.topic = topic.name;
    tr.append(el("td", topic.name), el("td", topic.events, "num"), el("td", rate.toFixed(1), "num"));
    const cell = el("td");
    cell.append(sparkline(seen.points));
    tr.append(cell);
    return tr;
  });
  fill($("topics").tBodies[0], rows);
  const select = $("tail-topic");
  const chosen = select.value;
  const names = topics.map((t) => t.name);
  if (names.join("\n") !== Array.from(select.options, (o) => o.value).join("\n")) {
    select.replaceChildren(...names.map((name) => el("option", name)));
    if (names.includes(chosen)) select.value = chosen;
  }
}

function renderGroups(groups) {
  fill($("groups").tBodies[0], groups.map((group) => {
    const tr = el("tr");
    tr.dataset.group = group.name;
    const bars = el("td");
    for (const p of group.partitions) {
      const bar = el("span", null, "bar");
      bar.style.width = `${Math.min(60, 2 + Math.log2(1 + p.lag) * 6)}px`;
      bar.title = `${p.topic}[${p.partition}]: lag ${p.lag}`;
      if (p.lag > 0) bars.append(bar);
    }
    tr.append(el("td", group.name), el("td", group.members.length, "num"),
      el("td", group.lag, group.lag > 0 ? "num lag" : "num"), bars);
    return tr;
  }));
}

function renderDlq(queues) {
  fill($("dlq").tBodies[0], queues.map((queue) => {
    const tr = el("tr");
    tr.dataset.queue = queue.topic;
    const actions = el("td");
    actions.append(
      button("Show", () => showLetters(queue.topic)),
      button("Redrive", () => act("POST", `/dlq/${encodeURIComponent(queue.topic)}/redrive`, queue.topic)),
      button("Purge", () => {
        if (confirm(`Delete every dead letter of ${queue.topic}?`)) {
          act("POST", `/dlq/${encodeURIComponent(queue.topic)}/purge`, queue.topic);
        }
      }, "danger"),
    );
    tr.append(el("td", queue.topic), el("td", queue.dead_letters, "num"), actions);
    return tr;
  }));
}

async function act(method, path, topic) {
  try {
    await api(method, path);
    await showLetters(topic);
  } catch (error) {
    alert(error.message);
  }
}

async function showLetters(topic) {
  const found = await api("GET", `/dlq/${encodeURIComponent(topic)}?limit=100`);
  $("letters").hidden = false;
  $("letters-title").textContent = `${found.topic}: ${found.dead_letters.length} letter(s)`;
  fill($("letters-body"), found.dead_letters.map((letter) => {
    const record = letter.dead_letter || {};
    const tr = el("tr");
    const event = letter.event || {};
    tr.append(el("td", `${letter.partition}:${letter.offset}`, "mono"), el("td", event.type || "(poison)"),
      el("td", record.attempts ?? "", "num"), el("td", record.error_message || letter.problem || ""));
    const cell = el("td");
    if (letter.event) cell.append(button("Inspect", () => showEvent(letter.event, letter)));
    tr.append(cell);
    return tr;
  }));
}

function addTailRow(event) {
  const tr = el("tr");
  tr.append(el("td", event.time || ""), el("td", event.type),
    el("td", event.subject || event.partitionkey || ""), el("td", event.id, "mono"));
  tr.addEventListener("click", () => showEvent(event));
  const body = $("tail").tBodies[0];
  body.prepend(tr);
  while (body.rows.length > 200) body.deleteRow(-1);
}

function startTail(topic, filter) {
  stopTail();
  const params = new URLSearchParams();
  filter.split(",").map((part) => part.trim()).filter(Boolean).forEach((f) => params.append("filter", f));
  tail = new EventSource(`/topics/${encodeURIComponent(topic)}/stream?${params}`);
  tail.onmessage = (message) => addTailRow(JSON.parse(message.data));
  tail.onerror = () => $("tail-section").classList.add("stale");
  $("tail-stop").disabled = false;
}

function stopTail() {
  if (tail) tail.close();
  tail = null;
  $("tail-stop").disabled = true;
}

function showEvent(event, letter) {
  shownEvent = event;
  $("detail-section").hidden = false;
  $("detail-id").textContent = event.id;
  const rows = Object.entries(event).filter(([name]) => name !== "data" && name !== "data_base64")
    .map(([name, value]) => {
      const tr = el("tr");
      tr.append(el("th", name), el("td", typeof value === "string" ? value : JSON.stringify(value)));
      return tr;
    });
  if (letter && letter.dead_letter) {
    for (const [name, value] of Object.entries(letter.dead_letter)) {
      const tr = el("tr");
      tr.append(el("th", `dead letter: ${name}`), el("td", value));
      rows.push(tr);
    }
  }
  fill($("detail-attributes").tBodies[0], rows);
  const data = "data" in event ? event.data : event.data_base64;
  $("detail-data").textContent = typeof data === "string" ? data : JSON.stringify(data, null, 2);
  $("trace").replaceChildren();
}

function treeNode(node) {
  const li = el("li");
  li.append(el("span", node.type, "mono"), el("span", ` ${node.topic} ${node.partition}:${node.offset}`, "muted"));
  if (node.compensates) li.append(el("span", " compensates " + node.compensates, "muted"));
  for (const handling of node.handlings || []) {
    li.append(el("span", `${handling.group}: ${handling.outcome} (${handling.attempts} attempt(s))`,
      `outcome ${handling.outcome}`));
  }
  if (node.children && node.children.length) {
    const ul = el("ul", null, "tree");
    ul.append(...node.children.map(treeNode));
    li.append(ul);
  }
  return li;
}

async function showTrace() {
  if (!shownEvent) return;
  const target = $("trace");
  try {
    const root = shownEvent.correlationid || shownEvent.id; // the whole flow it belongs to
    const flow = await api("GET", `/trace/${encodeURIComponent(root)}`);
    const ul = el("ul", null, "tree");
    ul.append(...flow.roots.map(treeNode));
    target.replaceChildren(el("p", `${flow.events} event(s): ${flow.types.join(", ")}`, "muted"), ul);
  } catch (error) {
    target.replaceChildren(el("p", error.message, "muted"));
  }
}

function renderWebhooks(webhooks) {
  $("webhooks-section").hidden = false;
  fill($("webhooks").tBodies[0], webhooks.map((hook) => {
    const tr = el("tr");
    const state = hook.paused ? "paused" : hook.failures ? `active, ${hook.failures} failure(s)` : "active";
    const cell = el("td", state, hook.paused ? "lag" : "");
    if (hook.last_error) cell.title = hook.last_error;
    tr.append(el("td", hook.id, "mono"), el("td", hook.url), el("td", hook.topic), cell);
    return tr;
  }));
}

function connect() {
  const status = $("status");
  const stream = new EventSource("/dashboard/stream");
  stream.onopen = () => { status.textContent = "live"; status.className = "pill live"; };
  stream.onerror = () => { status.textContent = "reconnecting…"; status.className = "pill down"; };
  stream.addEventListener("snapshot", (message) => {
    const snapshot = JSON.parse(message.data);
    $("broker").textContent = snapshot.broker || "";
    $("no-inspection").hidden = snapshot.inspectable !== false;
    renderTopics(snapshot.topics || []);
    renderGroups(snapshot.groups || []);
    renderDlq(snapshot.dlq || []);
    if (snapshot.webhooks) renderWebhooks(snapshot.webhooks);
  });
}

document.addEventListener("DOMContentLoaded", () => {
  $("tail-form").addEventListener("submit", (submitted) => {
    submitted.preventDefault();
    if ($("tail-topic").value) startTail($("tail-topic").value, $("tail-filter").value);
  });
  $("tail-stop").addEventListener("click", stopTail);
  $("detail-trace").addEventListener("click", showTrace);
  connect();
});
