#!/usr/bin/env python
import os
import sys


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "support_agent.settings")
    from django.core.management import execute_from_command_line

    from support_agent.bootstrap import service_prepare

    service_prepare()
    from django.db.utils import ProgrammingError

    try:
        execute_from_command_line(sys.argv)
    except ProgrammingError as exc:
        # A missing table means an unmigrated database: one line that says what to do, not a traceback.
        if type(exc.__cause__).__name__ != "UndefinedTable":
            raise
        missing = str(exc.__cause__).splitlines()[0]
        sys.exit(f"The database is not migrated ({missing}): run `python manage.py migrate` first.")


if __name__ == "__main__":
    main()
