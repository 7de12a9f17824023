// Building the page's parts. Everything shown comes from events (untrusted): it only ever goes
// into the DOM as text, never as HTML.

import { RUNNING_STATES, eventKind, subscribers, timeline } from "./model.js";

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "class") node.className = value;
    else node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function clock(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return String(iso || "");
  const pad = (n, width = 2) => String(n).padStart(width, "0");
  return `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

export function duration(ms) {
  if (!Number.isFinite(ms)) return "";
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(ms < 10000 ? 2 : 1)} s`;
  return `${Math.floor(ms / 60000)} min ${Math.round((ms % 60000) / 1000)} s`;
}

function age(ms) {
  if (!Number.isFinite(ms)) return "never";
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 120 ? `${s} s ago` : s < 7200 ? `${Math.round(s / 60)} min ago` : `${Math.round(s / 3600)} h ago`;
}

function since(from, to) {
  return Date.parse(to) - Date.parse(from);
}

export function badge(state, result) {
  const label = result && state !== result ? `${state} · ${result}` : state;
  return h("span", { class: `badge state-${state} result-${result || "none"}` }, label || "unknown");
}

// -- projects -> stages -> services ------------------------------------------------------------

export function projectTree(projects, selection, onSelect) {
  const item = (label, target, level, children = []) => {
    const current = sameSelection(selection, target);
    return h(
      "li",
      {},
      h("button", { type: "button", class: `node level-${level}`, "aria-current": current ? "true" : null,
        onclick: () => onSelect(target) }, label),
      children.length ? h("ul", {}, children) : null,
    );
  };
  return projects.map((project) =>
    item(project.projectName, { project: project.projectName }, 0, (project.stages || []).map((stage) =>
      item(stage.stageName, { project: project.projectName, stage: stage.stageName }, 1, (stage.services || []).map(
        (service) => item(service.serviceName, { project: project.projectName, stage: stage.stageName,
          service: service.serviceName }, 2),
      )),
    )),
  );
}

function sameSelection(a, b) {
  return a && a.project === b.project && a.stage === b.stage && a.service === b.service;
}

export function selects(selection, sequence) {
  if (!selection) return true;
  if (sequence.project !== selection.project) return false;
  if (selection.stage && !(sequence.stages || []).some((s) => s.name === selection.stage)) return false;
  return !selection.service || sequence.service === selection.service;
}

// -- the sequence list ---------------------------------------------------------------------------

export function sequenceItems(sequences, selectedContext, onSelect) {
  return sequences.map((sequence) => {
    const stages = (sequence.stages || []).map((s) => s.name).join(", ");
    const last = (sequence.stages || []).at(-1) || {};
    return h(
      "li",
      {},
      h("button", {
        type: "button",
        class: "sequence",
        "data-context": sequence.shkeptncontext,
        "aria-current": sequence.shkeptncontext === selectedContext ? "true" : null,
        onclick: () => onSelect(sequence),
      },
      h("span", { class: "line" }, h("strong", {}, sequence.name), badge(sequence.state, last.result)),
      h("span", { class: "meta" }, `${sequence.project} › ${stages} › ${sequence.service}`),
      h("span", { class: "meta" }, h("time", { datetime: sequence.time }, clock(sequence.time)), " · ",
        h("code", {}, sequence.shkeptncontext.slice(0, 8))),
      ),
    );
  });
}

// -- one sequence: its stages and its task events ----------------------------------------------

export function sequenceDetails(sequence, events, integrations, onAbort) {
  const running = RUNNING_STATES.includes(sequence.state);
  const head = h(
    "header",
    { class: "details-head" },
    h("div", {},
      h("h2", {}, sequence.name, " ", badge(sequence.state, ((sequence.stages || []).at(-1) || {}).result)),
      h("p", { class: "meta" }, `${sequence.project} › ${sequence.service} · triggered `,
        h("time", { datetime: sequence.time }, clock(sequence.time)), " · keptnContext ",
        h("code", {}, sequence.shkeptncontext)),
    ),
    running
      ? h("button", { type: "button", class: "danger", onclick: onAbort,
          "aria-label": `Abort sequence ${sequence.name} (${sequence.shkeptncontext})` }, "Abort")
      : null,
  );
  const stages = h("ul", { class: "stages", "aria-label": "Stages" }, (sequence.stages || []).map((stage) =>
    h("li", {}, h("span", {}, stage.name), badge(stage.state, stage.result),
      stage.status ? h("span", { class: "meta" }, `status ${stage.status}`) : null),
  ));
  const items = timeline(events).map((item) =>
    item.task ? taskBlock(item.task, sequence, integrations) : eventLine(item.event),
  );
  return [head, stages, h("ol", { class: "timeline", "aria-label": "Events" }, items)];
}

function eventLine(event) {
  const kind = eventKind(event.type || "");
  const data = event.data || {};
  const outcome = [data.status, data.result].filter(Boolean).join(" · ");
  return h("li", { class: "event-line" },
    h("span", { class: "event-type", title: event.type }, `${kind.name} ${kind.phase}`),
    h("span", { class: "meta" }, `from ${event.source || "?"}`),
    h("time", { datetime: event.time, class: "meta" }, clock(event.time)),
    outcome ? h("span", { class: "meta" }, outcome) : null,
    typeof data.message === "string" && data.message ? h("span", { class: "message" }, data.message) : null,
  );
}

function taskBlock(task, sequence, integrations) {
  const open = task.finished.length === 0;
  const last = task.finished.at(-1);
  const total = last ? since(task.triggered.time, last.time) : NaN;
  const result = last ? (last.data || {}).result : undefined;
  const running = RUNNING_STATES.includes(sequence.state);
  const status = last ? (last.data || {}).status : running ? "open" : "unfinished";
  return h("li", { class: "task", "data-task": task.name },
    h("div", { class: "task-head" },
      h("h3", {}, "Task ", h("code", {}, task.name)),
      badge(status || "finished", result),
      last ? h("span", { class: "meta" }, `took ${duration(total)}`) : null,
    ),
    open && running ? nobodyFlag(task, integrations) : null,
    eventTable(task),
    task.finished.map((finished) => finishedBlock(task, finished)),
  );
}

function nobodyFlag(task, integrations) {
  const type = task.triggered.type;
  if (subscribers(integrations, type, task.triggered.data || {}).length > 0) return null;
  return h("p", { class: "flag", role: "note" }, `No integration subscribes to ${type}: nothing will run this task. `,
    "Start one that does (e.g. jes with PUBSUB_TOPIC), or abort the sequence.");
}

function eventTable(task) {
  const rows = task.events.map((event) => {
    const kind = eventKind(event.type || "");
    const data = event.data || {};
    const note = kind.phase === "finished" ? [data.status, data.result].filter(Boolean).join(" · ") : data.message;
    return h("tr", {},
      h("td", {}, h("code", { title: event.type }, `.${kind.phase}`)),
      h("td", { class: "nowrap" }, event.source || ""),
      h("td", { class: "num" }, h("time", { datetime: event.time }, clock(event.time))),
      h("td", { class: "num" }, `+${duration(since(task.triggered.time, event.time))}`),
      h("td", { class: "note-cell" }, typeof note === "string" ? note : ""),
    );
  });
  return h("table", { class: "events" },
    h("caption", { class: "visually-hidden" }, `Events of task ${task.name}`),
    h("thead", {}, h("tr", {}, ["Event", "Source", "Time", "Since .triggered", "Note"].map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows),
  );
}

function finishedBlock(task, finished) {
  const data = finished.data || {};
  return h("div", { class: "finished" },
    typeof data.message === "string" && data.message
      ? h("pre", { class: "log", tabindex: "0", "aria-label": `Message of ${task.name}.finished (the task's logs)` },
          data.message.replace(/\n+$/, ""))
      : null,
    isPlainObject(data.jes) ? jesTables(data.jes) : null,
  );
}

// data.jes: its plain entries in one table, each list of objects (the tasks) in a table of its own.
function jesTables(jes) {
  const lists = Object.entries(jes).filter(([, v]) => Array.isArray(v) && v.length && v.every(isPlainObject));
  const plain = Object.fromEntries(Object.entries(jes).filter(([key]) => !lists.some(([name]) => name === key)));
  return [
    Object.keys(plain).length ? valueTable(plain, "data.jes") : null,
    ...lists.map(([key, rows]) => valueTable(rows, `data.jes.${key}`)),
  ];
}

// An object as a two-column table; a list of objects as a table with a column per key.
export function valueTable(value, caption) {
  if (Array.isArray(value) && value.length && value.every(isPlainObject)) {
    const columns = [...new Set(value.flatMap((row) => Object.keys(row)))];
    return h("table", { class: "values grid" }, caption ? h("caption", {}, caption) : null,
      h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
      h("tbody", {}, value.map((row) => h("tr", {}, columns.map((c) => h("td", {}, cell(row[c])))))));
  }
  if (!isPlainObject(value)) return h("span", {}, cell(value));
  return h("table", { class: "values" }, caption ? h("caption", {}, caption) : null,
    h("tbody", {}, Object.entries(value).map(([key, item]) =>
      h("tr", {}, h("th", { scope: "row" }, key), h("td", {}, isPlainObject(item) || Array.isArray(item) ? valueTable(item) : cell(item))),
    )));
}

function cell(value) {
  if (value === undefined || value === null) return "";
  if (typeof value === "object") return h("code", {}, JSON.stringify(value));
  return String(value);
}

function isPlainObject(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

// -- integrations (the Bridge's "Uniform" page) --------------------------------------------------

export function integrationTable(integrations, now) {
  if (!integrations.length) return h("p", { class: "empty" }, "No integration is registered.");
  const heads = ["Name", "Location", "Host / namespace", "Version", "Last heartbeat", "Subscriptions"];
  return h("table", { class: "integrations-table" },
    h("thead", {}, h("tr", {}, heads.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, integrations.map((integration) => {
      const meta = integration.metadata || {};
      const kube = meta.kubernetesmetadata || {};
      return h("tr", { "data-integration": integration.name },
        h("th", { scope: "row" }, integration.name),
        h("td", {}, meta.location || ""),
        h("td", {}, [meta.hostname, kube.namespace, kube.podname].filter(Boolean).join(" / ")),
        h("td", {}, meta.integrationversion || ""),
        h("td", {}, h("time", { datetime: meta.lastseen, title: meta.lastseen }, clock(meta.lastseen)),
          h("span", { class: "meta" }, ` (${age(now - Date.parse(meta.lastseen))})`)),
        h("td", {}, h("ul", { class: "plain" }, (integration.subscriptions || []).map((s) =>
          h("li", {}, h("code", {}, s.event), filterText(s.filter))))),
      );
    })),
  );
}

function filterText(filter) {
  const f = filter || {};
  const parts = [["projects", f.projects], ["stages", f.stages], ["services", f.services]]
    .filter(([, values]) => values && values.length)
    .map(([name, values]) => `${name}: ${values.join(", ")}`);
  return parts.length ? h("span", { class: "meta" }, ` (${parts.join("; ")})`) : null;
}
