// The page: asks for the token once (kept in sessionStorage), then polls the Keptn API every
// second and redraws what changed.

import { Api, ApiError } from "./api.js";
import { shipyardSequences } from "./model.js";
import * as render from "./render.js";

const POLL_MS = 1000;
const TOKEN_KEY = "jes.token";
const $ = (id) => document.getElementById(id);

const state = {
  config: null,
  api: null,
  view: "sequences",
  selection: null, // {project, stage?, service?}
  selected: null, // {project, context}
  projects: [],
  sequences: [],
  integrations: [],
  events: [],
  drawn: {},
  timer: null,
  polling: false,
  again: false,
};

async function start() {
  const response = await fetch("/page/config.json", { cache: "no-store" });
  state.config = await response.json();
  $("login-form").addEventListener("submit", login);
  $("forget-token").addEventListener("click", () => logout(""));
  $("show-sequences").addEventListener("click", () => show("sequences"));
  $("show-integrations").addEventListener("click", () => show("integrations"));
  $("trigger-form").addEventListener("submit", trigger);
  $("trigger-sequence").addEventListener("change", fillTriggerBody);
  for (const radio of document.querySelectorAll("input[name=region]")) radio.addEventListener("change", fillTriggerBody);
  const token = sessionStorage.getItem(TOKEN_KEY);
  if (token === null) showLogin("");
  else connect(token);
}

// -- the token -----------------------------------------------------------------------------------

async function login(event) {
  event.preventDefault();
  await connect($("token").value);
}

async function connect(token) {
  const api = new Api(state.config.apiPrefix, token);
  try {
    await api.projects();
  } catch (error) {
    showLogin(error.status === 401 || error.status === 403 ? `The control plane refused this token (${error.message}).` : error.message);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  state.api = api;
  $("token").value = "";
  $("login").hidden = true;
  $("app").hidden = false;
  $("views").hidden = false;
  $("forget-token").hidden = false;
  refresh();
}

function logout(message) {
  sessionStorage.removeItem(TOKEN_KEY);
  state.api = null;
  clearTimeout(state.timer);
  showLogin(message);
}

function showLogin(message) {
  $("app").hidden = true;
  $("views").hidden = true;
  $("forget-token").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !message;
  $("login-error").textContent = message;
  $("live").textContent = "";
  $("token").focus();
}

// -- polling -------------------------------------------------------------------------------------

// Poll now (one poll at a time; a request meanwhile polls again right after).
async function refresh() {
  if (state.polling) {
    state.again = true;
    return;
  }
  clearTimeout(state.timer);
  state.polling = true;
  try {
    await poll();
    showError("");
    $("live").textContent = `live · updated ${render.clock(new Date().toISOString()).slice(0, 8)}`;
  } catch (error) {
    if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
      logout(`The control plane refused the token (${error.message}); enter it again.`);
      return;
    }
    showError(`Cannot update: ${error.message}`);
    $("live").textContent = "not updating";
  } finally {
    state.polling = false;
  }
  if (!state.api) return;
  if (state.again) {
    state.again = false;
    refresh();
  } else {
    state.timer = setTimeout(refresh, POLL_MS);
  }
}

async function poll() {
  const api = state.api;
  const projects = await api.projects();
  const lists = await Promise.all(projects.map((p) => api.sequences(p.projectName)));
  const sequences = lists.flat().sort((a, b) => Date.parse(b.time) - Date.parse(a.time)); // newest first
  const integrations = await api.integrations();
  const selected = state.selected;
  const events = selected ? await api.events(selected.project, selected.context) : [];
  if (api !== state.api) return; // logged out meanwhile
  Object.assign(state, { projects, sequences, integrations, events });
  draw();
}

// -- drawing -------------------------------------------------------------------------------------

// Redraw a part only when what it shows changed (keeps focus, scroll and text selection).
function drawPart(name, inputs, build) {
  const key = JSON.stringify(inputs);
  if (state.drawn[name] === key) return false;
  state.drawn[name] = key;
  build();
  return true;
}

function draw() {
  drawPart("projects", [state.projects, state.selection], () =>
    $("projects").replaceChildren(...render.projectTree(state.projects, state.selection, selectScope)),
  );
  drawPart("triggerOptions", state.projects, fillTriggerOptions);
  const shown = state.sequences.filter((s) => render.selects(state.selection, s));
  drawPart("sequences", [shown, state.selected], () => {
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.context : null;
    $("sequences").replaceChildren(...render.sequenceItems(shown, state.selected && state.selected.context, selectSequence));
    if (!shown.length) $("sequences").replaceChildren(render.h("li", { class: "empty" }, "No sequence yet."));
    if (focused) document.querySelector(`#sequences [data-context="${CSS.escape(focused)}"]`)?.focus();
    const scope = state.selection ? [state.selection.project, state.selection.stage, state.selection.service] : [];
    $("sequences-scope").textContent = scope.filter(Boolean).join(" › ");
  });
  drawDetails();
  if (state.view === "integrations") {
    $("integrations").replaceChildren(render.integrationTable(state.integrations, Date.now()));
  }
}

function drawDetails() {
  const selected = state.selected;
  const sequence = selected && state.sequences.find((s) => s.shkeptncontext === selected.context && s.project === selected.project);
  const subscriptions = state.integrations.map((i) => [i.name, i.subscriptions]);
  drawPart("details", [sequence, state.events, subscriptions], () => {
    const body = $("details");
    if (!sequence) {
      body.replaceChildren(render.h("p", { class: "empty" }, selected ? "Waiting for the sequence…" : "Select a sequence."));
      return;
    }
    body.replaceChildren(...render.sequenceDetails(sequence, state.events, state.integrations, () => abort(sequence)));
  });
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message;
}

function show(view) {
  state.view = view;
  $("sequences-view").hidden = view !== "sequences";
  $("integrations-view").hidden = view !== "integrations";
  $("show-sequences").setAttribute("aria-pressed", String(view === "sequences"));
  $("show-integrations").setAttribute("aria-pressed", String(view === "integrations"));
  draw();
}

function selectScope(selection) {
  state.selection = selection;
  draw();
}

function selectSequence(sequence) {
  $("action-error").hidden = true;
  state.selected = { project: sequence.project, context: sequence.shkeptncontext };
  state.events = [];
  draw();
  refresh();
}

// -- actions -------------------------------------------------------------------------------------

async function abort(sequence) {
  const shown = $("action-error");
  try {
    await state.api.abort(sequence.project, sequence.shkeptncontext);
    shown.hidden = true;
    refresh();
  } catch (error) {
    shown.textContent = `Abort failed: ${error.message}`;
    shown.hidden = false;
  }
}

async function trigger(event) {
  event.preventDefault();
  const result = $("trigger-result");
  let body;
  try {
    body = JSON.parse($("trigger-body").value);
  } catch (error) {
    result.textContent = `The event is not valid JSON: ${error.message}`;
    return;
  }
  try {
    const answer = await state.api.trigger(body);
    const project = body && body.data ? body.data.project : undefined;
    result.textContent = `Triggered: keptnContext ${answer.keptnContext}`;
    if (project) selectSequence({ project, shkeptncontext: answer.keptnContext });
  } catch (error) {
    result.textContent = `Not triggered: ${error.message}`;
  }
}

function fillTriggerOptions() {
  const select = $("trigger-sequence");
  const previous = select.value;
  const options = [];
  for (const project of state.projects) {
    let sequences = [];
    try {
      sequences = shipyardSequences(project.shipyard);
    } catch {
      sequences = []; // a shipyard the page cannot read: the body can still be written by hand
    }
    for (const { stage, sequence } of sequences) {
      const value = JSON.stringify([project.projectName, stage, sequence]);
      options.push(render.h("option", { value }, `${project.projectName} › ${stage} › ${sequence}`));
    }
  }
  select.replaceChildren(...options);
  if (options.some((o) => o.value === previous)) select.value = previous;
  if (select.value !== previous) fillTriggerBody();
}

function fillTriggerBody() {
  const select = $("trigger-sequence");
  if (!select.value) return;
  const [project, stage, sequence] = JSON.parse(select.value);
  const hello = state.config.helloWorld;
  const isHello = project === hello.project && stage === hello.stage && sequence === hello.sequence;
  $("trigger-regions").hidden = !isHello;
  let body;
  if (isHello) {
    body = hello.bodies[document.querySelector("input[name=region]:checked").value];
  } else {
    const stageInfo = (state.projects.find((p) => p.projectName === project)?.stages || []).find((s) => s.stageName === stage);
    const service = stageInfo && stageInfo.services && stageInfo.services.length ? stageInfo.services[0].serviceName : "service";
    body = { data: { project, stage, service }, source: "jes-page", specversion: "1.0", type: `sh.keptn.event.${stage}.${sequence}.triggered` };
  }
  $("trigger-body").value = JSON.stringify(body, null, 2);
}

start().catch((error) => showError(`The page could not start: ${error.message}`));
