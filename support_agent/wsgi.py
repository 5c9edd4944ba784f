import os

from django.core.wsgi import get_wsgi_application

from support_agent.bootstrap import service_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")
service_prepare()  # a no-op under gunicorn, whose config already did it
django_application = get_wsgi_application()

from tickets.webhook_short_path import WebhookShortPath  # noqa: E402  (needs the apps that setup loaded)

# A valid webhook delivery is stored without Django's request machinery; everything else is Django's.
application = WebhookShortPath(django_application)
