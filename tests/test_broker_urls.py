"""Broker URLs whose adapter cannot load say what to install; unknown schemes list the known."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tidings import ConfigurationError
from tidings.brokers import from_url


def _without(library: str, code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter where ``library`` cannot be imported."""
    return subprocess.run(
        [sys.executable, "-c", f"import sys; sys.modules[{library!r}] = None\n{code}"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("scheme", "library"), [("kafka", "aiokafka"), ("nats", "nats")], ids=["kafka", "nats"]
)
def test_a_missing_client_names_the_extra(scheme: str, library: str) -> None:
    result = _without(
        library,
        "from tidings.brokers import from_url\n"
        "from tidings.errors import ConfigurationError\n"
        "try:\n"
        f"    from_url('{scheme}://127.0.0.1:1')\n"
        "except ConfigurationError as exc:\n"
        "    print(exc)\n",
    )
    assert result.returncode == 0, result.stderr
    assert f"pip install 'tidings[{scheme}]'" in result.stdout


def test_the_cli_says_which_extra_to_install() -> None:
    result = _without(
        "aiokafka",
        "import sys\nfrom tidings.cli import main\n"
        "sys.argv = ['tidings', 'groups', '--broker', 'kafka://127.0.0.1:1']\nmain()",
    )
    assert result.returncode == 2
    assert "pip install 'tidings[kafka]'" in result.stderr


def test_an_unknown_scheme_lists_the_known_ones_without_the_password() -> None:
    with pytest.raises(ConfigurationError, match=r"known schemes: .*gcppubsub.*stomp") as caught:
        from_url("carrierpigeon://guest:secret@localhost/")
    assert "secret" not in str(caught.value)
