"""Session-wide test settings.

Under CI (``CI`` set, as ``.ci/run`` runs), hypothesis draws the same examples
on every run and keeps no example database: a property test that passed on
main fails there only because the code changed, never because of a new draw.
Locally the default profile keeps exploring new examples.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
