#!/usr/bin/env python3
"""A Keptn integration in one file (Python standard library only), served by `jes distributor`.

The distributor POSTs every event it takes for this integration here, as a structured CloudEvent
(JSON). For a `sh.keptn.event.<task>.triggered` event the integration answers 200 at once, then
does its work and reports through the distributor's `/event`:

    .started  ->  .status.changed  ->  .finished (succeeded, pass, "Hello, world from <location>!")

Keptn completes the task when as many `.finished` as `.started` arrived, so each triggered
event gets exactly one of each. Environment:

    PORT       where to listen (the distributor's PUBSUB_RECIPIENT_PORT)        [8080]
    EVENT_URL  the distributor's event forwarding                    [http://localhost:8081/event]
    SOURCE     the source of the events sent                                  [hello-integration]
"""

import json
import os
import sys
import threading
import urllib.request
import uuid
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
EVENT_URL = os.environ.get("EVENT_URL", "http://localhost:8081/event")
SOURCE = os.environ.get("SOURCE", "hello-integration")


def say(text):
    print(f"integration: {text}", flush=True)


def reply(triggered, kind, **data):
    """The event of `kind` (started, status.changed, finished) answering `triggered`."""
    task = triggered["type"].removeprefix("sh.keptn.event.").removesuffix(".triggered")
    given = triggered.get("data") or {}
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": SOURCE,
        "type": f"sh.keptn.event.{task}.{kind}",
        "time": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "shkeptncontext": triggered.get("shkeptncontext", ""),
        "triggeredid": triggered["id"],
        "data": {"project": given.get("project"), "stage": given.get("stage"), "service": given.get("service"), **data},
    }


def send(event):
    request = urllib.request.Request(
        EVENT_URL, data=json.dumps(event).encode(), method="POST",
        headers={"Content-Type": "application/cloudevents+json"},
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        say(f"sent {event['type']} ({answer.status})")


def work(triggered):
    """The task: greet the location the sequence was triggered for."""
    location = (triggered.get("data") or {}).get("sayhello", {}).get("location", "nowhere")
    try:
        send(reply(triggered, "started", status="succeeded"))
        send(reply(triggered, "status.changed", status="succeeded", message=f"greeting {location}"))
        send(reply(triggered, "finished", status="succeeded", result="pass", message=f"Hello, world from {location}!"))
    except OSError as exc:  # the distributor is away: Keptn's task-started timeout will tell
        say(f"could not report on {triggered['id']}: {exc}")


class Handler(BaseHTTPRequestHandler):
    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        try:
            event = json.loads(self.rfile.read(length))
        except ValueError:
            self.send_response(400)
            self.end_headers()
            return
        self.send_response(200)
        self.end_headers()
        temporary = (event.get("data") or {}).get("temporaryData", {})
        subscription = temporary.get("distributor", {}).get("subscriptionID", "-")
        say(f"received {event.get('type')} {event.get('id')} (subscription {subscription})")
        if str(event.get("type", "")).endswith(".triggered"):
            threading.Thread(target=work, args=(event,), daemon=True).start()

    def log_message(self, format, *args):  # quiet: one line per event is printed above
        pass


def main():
    server = ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
    say(f"listening on 127.0.0.1:{PORT}, reporting to {EVENT_URL}")
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
