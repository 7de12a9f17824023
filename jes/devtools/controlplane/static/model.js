// Pure functions over the API's answers: shipyard sequences, a sequence's timeline, subscribers.

const PREFIX = "sh.keptn.event.";
export const RUNNING_STATES = ["triggered", "started", "waiting", "paused"];

// "sh.keptn.event.sayhello.finished" -> {name: "sayhello", phase: "finished", task: true};
// "sh.keptn.event.dev.sequence1.triggered" -> {name: "dev.sequence1", phase: "triggered", task: false}.
export function eventKind(type) {
  const rest = type.startsWith(PREFIX) ? type.slice(PREFIX.length) : type;
  const suffix = rest.endsWith(".status.changed") ? "status.changed" : rest.slice(rest.lastIndexOf(".") + 1);
  const name = rest.slice(0, rest.length - suffix.length - 1);
  return { name, phase: suffix, task: type.startsWith(PREFIX) && name !== "" && !name.includes(".") };
}

// A sequence's events (the datastore answers newest first) in order, each task's events grouped
// under its .triggered event: [{task: {name, triggered, events, finished}} | {event}].
export function timeline(eventsNewestFirst) {
  const events = [...eventsNewestFirst].reverse(); // oldest first; equal times keep the datastore's order
  events.sort((a, b) => Date.parse(a.time) - Date.parse(b.time));
  const tasks = new Map();
  const items = [];
  for (const event of events) {
    const kind = eventKind(event.type || "");
    if (kind.task && kind.phase === "triggered") {
      const task = { name: kind.name, triggered: event, events: [event], finished: [] };
      tasks.set(event.id, task);
      items.push({ task });
      continue;
    }
    const task = kind.task ? tasks.get(event.triggeredid) : undefined;
    if (task) {
      task.events.push(event);
      if (kind.phase === "finished") task.finished.push(event);
    } else {
      items.push({ event });
    }
  }
  return items;
}

// The names of the integrations with a subscription that receives this event (NATS subjects:
// "*" is one token, ">" the rest; an empty filter list admits every value).
export function subscribers(integrations, type, data) {
  const names = [];
  for (const integration of integrations) {
    const subscriptions = integration.subscriptions || [];
    if (subscriptions.some((s) => subjectMatches(s.event || "", type) && admits(s.filter, data))) {
      names.push(integration.name);
    }
  }
  return names;
}

function subjectMatches(pattern, subject) {
  const want = pattern.split(".");
  const have = subject.split(".");
  for (let i = 0; i < want.length; i++) {
    if (want[i] === ">") return have.length > i;
    if (i >= have.length || (want[i] !== "*" && want[i] !== have[i])) return false;
  }
  return want.length === have.length;
}

function admits(filter, data) {
  const ok = (values, value) => !values || values.length === 0 || values.includes(value);
  const f = filter || {};
  return ok(f.projects, data.project) && ok(f.stages, data.stage) && ok(f.services, data.service);
}

// The sequences a project's shipyard defines: [{stage, sequence}].
export function shipyardSequences(shipyardYaml) {
  const doc = parseYaml(shipyardYaml || "");
  const stages = (doc && doc.spec && doc.spec.stages) || [];
  const found = [];
  for (const stage of Array.isArray(stages) ? stages : []) {
    for (const sequence of Array.isArray(stage.sequences) ? stage.sequences : []) {
      if (stage.name && sequence && sequence.name) found.push({ stage: String(stage.name), sequence: String(sequence.name) });
    }
  }
  return found;
}

// A reader for the block-style YAML subset shipyards are written in: mappings, "- " lists, plain
// and quoted scalars, comments. Flow collections and block scalars are kept as text.
export function parseYaml(text) {
  const lines = [];
  for (const raw of text.split(/\r?\n/)) {
    const body = raw.replace(/\t/g, "  ");
    const trimmed = body.trim();
    if (trimmed === "" || trimmed.startsWith("#") || trimmed === "---") continue;
    lines.push({ indent: body.length - body.trimStart().length, text: trimmed });
  }
  const cursor = { i: 0 };
  return lines.length ? block(lines, cursor, lines[0].indent) : null;
}

function block(lines, cursor, indent) {
  return lines[cursor.i].text.startsWith("-") ? list(lines, cursor, indent) : mapping(lines, cursor, indent);
}

function list(lines, cursor, indent) {
  const items = [];
  while (cursor.i < lines.length && lines[cursor.i].indent === indent && isItem(lines[cursor.i].text)) {
    const line = lines[cursor.i];
    const rest = line.text.slice(1).trimStart();
    if (rest === "") {
      cursor.i++;
      items.push(cursor.i < lines.length && lines[cursor.i].indent > indent ? block(lines, cursor, lines[cursor.i].indent) : null);
    } else if (keyOf(rest) !== null) {
      // "- name: x" starts a mapping whose keys line up with "name"
      lines[cursor.i] = { indent: indent + (line.text.length - rest.length), text: rest };
      items.push(mapping(lines, cursor, lines[cursor.i].indent));
    } else {
      items.push(scalar(rest));
      cursor.i++;
    }
  }
  return items;
}

function mapping(lines, cursor, indent) {
  const result = {};
  while (cursor.i < lines.length && lines[cursor.i].indent === indent && !isItem(lines[cursor.i].text)) {
    const text = lines[cursor.i].text;
    const key = keyOf(text);
    if (key === null) throw new Error(`cannot read YAML line: ${text}`);
    const value = text.slice(key.length).replace(/^\s*:/, "").trim();
    cursor.i++;
    const next = lines[cursor.i];
    if (value !== "" && !/^[|>][-+]?$/.test(value)) {
      result[scalar(key)] = scalar(value);
    } else if (next && (next.indent > indent || (next.indent === indent && isItem(next.text) && value === ""))) {
      result[scalar(key)] = value === "" ? block(lines, cursor, next.indent) : blockScalar(lines, cursor, indent);
    } else {
      result[scalar(key)] = null;
    }
  }
  return result;
}

function blockScalar(lines, cursor, indent) {
  const kept = [];
  while (cursor.i < lines.length && lines[cursor.i].indent > indent) kept.push(lines[cursor.i++].text);
  return kept.join("\n");
}

function isItem(text) {
  return text === "-" || text.startsWith("- ");
}

// The key of "key: value" / "key:" (quoted keys allowed), or null when the line is no mapping entry.
function keyOf(text) {
  const quoted = /^("(?:[^"\\]|\\.)*"|'(?:[^']|'')*')\s*:(\s|$)/.exec(text);
  if (quoted) return quoted[1];
  const plain = /^([^\s"'#{[][^:#]*?)\s*:(\s|$)/.exec(text);
  return plain ? plain[1] : null;
}

function scalar(text) {
  const t = text.trim();
  if (t.startsWith('"')) {
    try {
      return JSON.parse(t.slice(0, t.lastIndexOf('"') + 1));
    } catch {
      return t.slice(1, t.lastIndexOf('"'));
    }
  }
  if (t.startsWith("'")) return t.slice(1, t.lastIndexOf("'")).replace(/''/g, "'");
  return t.replace(/\s+#.*$/, "");
}
