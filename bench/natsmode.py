"""NATS mode: how fast a ``.triggered`` event published on NATS becomes an accepted ``.started``.

A real nats-server (JetStream on, as Keptn's chart runs it), the local control plane publishing
its events to NATS and consuming jes's reports from the stream, and ``jes serve`` without an
endpoint (Keptn's services at their in-cluster names through HTTP_PROXY). Events are opened one
at a time, spaced, so each pickup is measured on its own: .triggered created → .started accepted,
both on the control plane's clock."""

from __future__ import annotations

import time
from typing import Any

from bench import jesproc, scenarios
from bench.stats import keptn_epoch, summary_ms
from jes.devtools import demonats

#: Between two events: each one is picked up alone.
SPACING_S = 0.05


def nats_pickup(opts: scenarios.Options) -> dict[str, Any]:
    names = scenarios.services(4)
    with demonats.nats_server() as url:
        with scenarios.fakes(opts, "nats", names, plane_options={"nats_url": url}) as stack:
            base_url = str(stack.plane.get("base_url"))
            env = jesproc.jes_environment(
                endpoint="", token="", kubeconfig=stack.kubeconfig, topics=(scenarios.TOPIC,),
                health_port=jesproc.free_port(),
                extra={"PUBSUB_URL": url, "PUBSUB_GROUP": "jes", "JES_NATS_RECONCILE_S": "30"}
                | demonats.proxy_environment(base_url),
            )  # fmt: skip
            with jesproc.JesProcess(env, opts.out / "nats-jes.log") as jes:
                jes.wait_ready()
                warmup = [scenarios.inject(stack, n)[0] for n in names]
                scenarios.wait_finished(stack, warmup, timeout_s=60, what="the NATS warm-up events")
                ids = []
                for k in range(opts.nats_events):
                    ids.append(scenarios.inject(stack, names[k % len(names)])[0])
                    time.sleep(SPACING_S)
                scenarios.wait_finished(stack, ids, timeout_s=120, what="the NATS events")
                polls = len(stack.plane.call("triggered_poll_times", scenarios.TOPIC))
                rss = jes.rss_mib()
            return _pickups(stack, ids) | {"reconciliation_polls": polls, "jes_rss_mib": round(rss, 1)}


def _pickups(stack: scenarios.Stack, ids: list[str]) -> dict[str, Any]:
    triggered = scenarios.triggered_times(stack)
    reports = scenarios.reports_by_trigger(stack)
    pickup, problems = [], []
    for event_id in ids:
        got = reports.get(event_id, {"started": [], "finished": []})
        if len(got["started"]) != 1 or len(got["finished"]) != 1:
            problems.append(f"{event_id}: {len(got['started'])} started, {len(got['finished'])} finished")
            continue
        pickup.append(keptn_epoch(got["started"][0]["time"]) - triggered[event_id])
    return {"events": len(ids), "pickup_ms": summary_ms(pickup), "problems": problems}
