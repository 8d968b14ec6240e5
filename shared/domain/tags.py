"""Customer tags: the one grammar every writer of a tag keeps.

A tag is 1-32 characters: lower-case letters, digits, ``-`` and ``_``, starting with a
letter or a digit. The customer API validates it (``shared.app.customers.Tag``), the rule
language refuses a ``tag customer`` action outside it when the rule set is saved
(``shared.rules.parser``), and adding tags stores nothing else (an outside review found
rules writing tags the API itself would refuse).
"""

from __future__ import annotations

import re

TAG_PATTERN = r"^[a-z0-9][a-z0-9_\-]{0,31}$"
MAX_TAG_LENGTH = 32
# Tags one customer holds at most.
MAX_TAGS = 50

_TAG = re.compile(TAG_PATTERN)


def is_tag(value: object) -> bool:
    return isinstance(value, str) and _TAG.fullmatch(value) is not None
