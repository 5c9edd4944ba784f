"""The REST API (included at /api/): the server API under customers/ and memory/, the widget API under widget/."""

from django.urls import URLPattern, URLResolver, include, path, re_path

from memory import api as memory_api
from support_agent import api as agent_api
from tickets import api as tickets_api

customer_urls: list[URLPattern | URLResolver] = [
    path("", tickets_api.CustomerDetailView.as_view(), name="api-customer"),
    path("tickets/", tickets_api.TicketListView.as_view(), name="api-tickets"),
    path("tickets/<int:ticket_id>/", tickets_api.TicketDetailView.as_view(), name="api-ticket"),
    path("messages/", tickets_api.MessageListView.as_view(), name="api-messages"),
    path("memory/", memory_api.CustomerBlockListView.as_view(), name="api-customer-blocks"),
    path("memory/<slug:label>/", memory_api.CustomerBlockDetailView.as_view(), name="api-customer-block"),
    path("passages/", memory_api.PassageListView.as_view(), name="api-passages"),
    path("passages/search/", memory_api.PassageSearchView.as_view(), name="api-passage-search"),
    path("passages/<int:passage_id>/", memory_api.PassageDetailView.as_view(), name="api-passage"),
    path(
        "passages/<int:passage_id>/supersede/", memory_api.PassageSupersedeView.as_view(), name="api-passage-supersede"
    ),
    path("context/", agent_api.CompiledContextView.as_view(), name="api-context"),
    path("turns/", agent_api.TurnView.as_view(), name="api-turns"),
    path("runs/", agent_api.RunListView.as_view(), name="api-runs"),
    path("runs/<int:run_id>/", agent_api.RunDetailView.as_view(), name="api-run"),
    path("export/", agent_api.ExportView.as_view(), name="api-export"),
    path("erase/", agent_api.EraseView.as_view(), name="api-erase"),
    path("merge/", agent_api.CustomerMergeView.as_view(), name="api-customer-merge"),
    path("merges/<int:merge_id>/undo/", agent_api.CustomerMergeUndoView.as_view(), name="api-customer-merge-undo"),
]

widget_urls: list[URLPattern | URLResolver] = [
    path("session/", agent_api.WidgetSessionView.as_view(), name="api-widget-session"),
    path("messages/", agent_api.WidgetMessagesView.as_view(), name="api-widget-messages"),
    path("runs/<int:run_id>/", agent_api.WidgetRunView.as_view(), name="api-widget-run"),
]

urlpatterns: list[URLPattern | URLResolver] = [
    path("customers/", tickets_api.CustomerListView.as_view(), name="api-customers"),
    path("customers/<int:customer_id>/", include(customer_urls)),
    path("messages/search/", memory_api.MessageSearchView.as_view(), name="api-message-search"),
    path("memory/", memory_api.OrganizationBlockListView.as_view(), name="api-org-blocks"),
    path("memory/<slug:label>/", memory_api.OrganizationBlockDetailView.as_view(), name="api-org-block"),
    path("widget/<str:publishable_key>/", include(widget_urls)),
    # Anything else under /api/ (a non-numeric id, a typo) gets the JSON error shape, not Django's HTML page.
    re_path(r"^[\s\S]*$", agent_api.api_not_found),  # [\s\S]: paths may hold a newline
]
