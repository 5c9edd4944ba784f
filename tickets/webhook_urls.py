from django.urls import URLPattern, URLResolver, path

from tickets.webhook_views import webhook_receive

app_name = "webhooks"

urlpatterns: list[URLPattern | URLResolver] = [
    path("<slug:kind>/<str:token>/", webhook_receive, name="receive"),
]
