"""The test run's password hasher: production's algorithm with few rounds.

Django's PBKDF2 runs a million SHA-256 rounds per password (about a second on the CI machine); every test that
asks for ``actors`` creates three staff users, which made password hashing minutes of ``make test``. Same
algorithm name and encoding as production, so a gunicorn or ``manage.py`` child started by a test (with the
stock hashers) verifies these passwords too (it stores a full-strength hash again after a login)."""

from __future__ import annotations

from django.contrib.auth.hashers import PBKDF2PasswordHasher


class FewRoundsPBKDF2PasswordHasher(PBKDF2PasswordHasher):
    iterations = 1_000
