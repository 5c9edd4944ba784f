import os

from django.core.asgi import get_asgi_application

from support_agent.bootstrap import service_prepare

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")
service_prepare()  # a no-op under gunicorn, whose config already did it
application = get_asgi_application()
