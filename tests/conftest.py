"""Shared fixtures: each lives in tests/fixtures/<name>.py and is re-exported here."""
from tests.fixtures.go_tarball import *  # noqa: F401,F403
from tests.fixtures.http_server import *  # noqa: F401,F403
from tests.fixtures.images import *  # noqa: F401,F403
from tests.fixtures.upstreams import *  # noqa: F401,F403
from tests.fixtures.pipeline import *  # noqa: F401,F403
