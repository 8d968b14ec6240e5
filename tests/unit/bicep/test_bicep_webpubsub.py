"""The Web PubSub of live updates (issue 14) in the templates: Entra ID only, no anonymous
connection, the hub the code publishes to, wired into the app's settings and roles."""

from __future__ import annotations

from shared.settings import BY_NAME
from tests.unit.bicep.bicep_tree import evaluate, path, properties
from tests.unit.bicep.conftest import module


def test_web_pubsub_is_entra_only_and_refuses_anonymous_connections() -> None:
    template = module("webpubsub")
    [service] = template.resources_of_type("Microsoft.SignalRService/webPubSub")
    props = properties(path(service.body, "properties"))
    assert props["disableLocalAuth"].text == b"true" and props["disableAadAuth"].text == b"false"
    [hub] = template.resources_of_type("Microsoft.SignalRService/webPubSub/hubs")
    assert evaluate(path(hub.body, "properties", "anonymousConnectPolicy"), template) == "deny"


def test_the_app_publishes_to_the_hub_main_bicep_creates(main) -> None:
    app_settings = main.var("appSettings")
    assert evaluate(main.variables["webPubSubHubName"], main) == BY_NAME["WEBPUBSUB_HUB"].default == \
        app_settings["WEBPUBSUB_HUB"]
    assert "webPubSub.outputs.endpoint" in str(app_settings["WEBPUBSUB_ENDPOINT"])
