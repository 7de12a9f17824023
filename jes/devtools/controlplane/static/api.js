// The control plane's Keptn API, called with the token in the x-token header (never in a URL).

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

export class Api {
  constructor(prefix, token) {
    this.prefix = prefix;
    this.token = token;
  }

  async call(method, path, body) {
    const headers = { "x-token": this.token, Accept: "application/json" };
    const init = { method, headers, cache: "no-store" };
    if (body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(this.prefix + path, init);
    } catch (error) {
      throw new ApiError(0, `the control plane cannot be reached (${error.message})`);
    }
    const text = await response.text();
    let json = null;
    try {
      json = text ? JSON.parse(text) : null;
    } catch {
      json = null;
    }
    if (!response.ok) {
      const said = json && typeof json.message === "string" ? json.message : text.trim().slice(0, 200);
      throw new ApiError(response.status, `${response.status} ${said || response.statusText}`);
    }
    return json;
  }

  projects() {
    return this.call("GET", "/controlPlane/v1/project?pageSize=100").then((page) => page.projects || []);
  }

  sequences(project) {
    return this.call("GET", `/controlPlane/v1/sequence/${enc(project)}?pageSize=100`).then((page) => page.states || []);
  }

  integrations() {
    return this.call("GET", "/controlPlane/v1/uniform/registration").then((list) => list || []);
  }

  // Every event of a context from the datastore, newest first (it answers at most 100 a page).
  async events(project, context) {
    const events = [];
    let next = "0";
    do {
      const query = `project=${enc(project)}&keptnContext=${enc(context)}&pageSize=100&nextPageKey=${enc(next)}`;
      const page = await this.call("GET", `/mongodb-datastore/event?${query}`);
      events.push(...(page.events || []));
      next = String(page.nextPageKey || "0");
    } while (next !== "0" && events.length < 2000);
    return events;
  }

  trigger(event) {
    return this.call("POST", "/v1/event", event);
  }

  abort(project, context) {
    return this.call("POST", `/controlPlane/v1/sequence/${enc(project)}/${enc(context)}/control`, {
      state: "abort",
      stage: "",
    });
  }
}

function enc(value) {
  return encodeURIComponent(value);
}
