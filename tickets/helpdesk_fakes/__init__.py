"""Loopback fakes of helpdesk history APIs, for the import tests and ``import_benchmark``: one module per vendor
on the shared base in ``common`` (generated history, faults, the HTTP server)."""

from tickets.helpdesk_fakes.chatwoot import FakeChatwoot
from tickets.helpdesk_fakes.common import FakeHelpdesk, Fault, serve
from tickets.helpdesk_fakes.front import FakeFront
from tickets.helpdesk_fakes.intercom import FakeIntercom
from tickets.helpdesk_fakes.zammad import FakeZammad
from tickets.helpdesk_fakes.zendesk import FakeZendesk

__all__ = ["FakeChatwoot", "FakeFront", "FakeHelpdesk", "FakeIntercom", "FakeZammad", "FakeZendesk", "Fault", "serve"]
