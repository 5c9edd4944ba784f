"""The chat widget's pages (included at /widget/). The widget's API is under /api/widget/."""

from django.urls import URLPattern, URLResolver, path

from support_agent.api import widget_demo

urlpatterns: list[URLPattern | URLResolver] = [
    path("demo/", widget_demo, name="widget-demo"),
]
