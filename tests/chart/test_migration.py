"""Values written for the original chart migrate without loss, and NOTES.txt says which value won."""

from __future__ import annotations

import json

from tests.chart.support import USER_SETS, FakeKubeApi, Helm

#: The original chart's values.yaml default, which the original ignored (it used subscription.pubsubTopic).
UPSTREAM_DEFAULT_TOPICS = ",".join(
    f"sh.keptn.event.{t}.triggered" for t in ("test", "deployment", "evaluation", "release", "approval")
)
OUR_DEFAULT_TOPICS = UPSTREAM_DEFAULT_TOPICS + ",sh.keptn.event.action.triggered"
WITHOUT_TOPIC = [s for s in USER_SETS if "topicSubscription" not in s]


def escaped(value: str) -> str:
    return value.replace(",", "\\,")


def test_the_original_default_topic_subscription_does_not_drop_action_triggered(helm: Helm) -> None:
    rendered = helm.template([*WITHOUT_TOPIC, f"remoteControlPlane.topicSubscription={escaped(UPSTREAM_DEFAULT_TOPICS)}"])
    assert rendered.value("PUBSUB_TOPIC") == OUR_DEFAULT_TOPICS


def test_a_chosen_topic_subscription_still_wins(helm: Helm) -> None:
    chosen = "sh.keptn.event.test.triggered,sh.keptn.event.deployment.triggered"
    rendered = helm.template([*WITHOUT_TOPIC, f"remoteControlPlane.topicSubscription={escaped(chosen)}"])
    assert rendered.value("PUBSUB_TOPIC") == chosen


def test_capitalised_pod_security_context_keys_win_over_the_chart_defaults(helm: Helm) -> None:
    rendered = helm.template(
        [*USER_SETS, "jobConfig.podSecurityContext.RunAsUser=1234", "jobConfig.podSecurityContext.RunAsNonRoot=false"]
    )
    context = json.loads(rendered.value("JES_POD_SECURITY_CONTEXT"))
    assert context["runAsUser"] == 1234 and context["runAsNonRoot"] is False
    assert not [key for key in context if key[0].isupper()], context
    assert context["runAsGroup"] == 2000, "the chart's other defaults stay"


def test_notes_say_which_value_won(helm: Helm, kube_api: FakeKubeApi) -> None:
    _, notes = helm.install_dry_run(
        kube_api.url,
        [
            *WITHOUT_TOPIC,
            f"remoteControlPlane.topicSubscription={escaped(UPSTREAM_DEFAULT_TOPICS)}",
            "jobConfig.podSecurityContext.RunAsUser=1234",
        ],
    )
    assert "remoteControlPlane.topicSubscription is the original chart's default" in notes
    assert "sh.keptn.event.action.triggered" in notes
    assert "jobConfig.podSecurityContext uses the original chart's spelling (RunAsUser)" in notes
    assert '"runAsUser":1234' in notes
    _, chosen = helm.install_dry_run(
        kube_api.url, [*USER_SETS, "subscription.pubsubTopic=sh.keptn.event.test.triggered"]
    )
    assert "remoteControlPlane.topicSubscription won over subscription.pubsubTopic" in chosen
