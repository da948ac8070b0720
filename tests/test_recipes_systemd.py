"""The systemd recipe as written, on SQLite: deploy/systemd/README.md's install steps, then
each unit's ExecStart= as a real process under `env -i`, with only what systemd gives it.

Issue 18: step 3 named a SQLite file and step 5 said SQLite "migrates itself", but a file
named in the URL is never created by a run, so the first timer tick stopped with exit 3.

What the test does, and the one liberty it takes: the paths. /etc/tokenrefresh, the
credentials directories and /var/lib (the units' %S, where StateDirectory= lives) are
folders under tmp_path, and the SQLite URL of step 3 is moved there with them. Everything
else is the README's and the units' text: step 3's URL and `keys generate`, the commands of
`tokenrefresh-admin` (its -p properties, parsed from the README) and of step 5, each unit's
Environment= and LoadCredential= lines (credentials copied into $CREDENTIALS_DIRECTORY, as
systemd does), its ExecStart= arguments. Running as the user `tokenrefresh` is left out (the
test runs as whoever runs it); that both the units and the admin function name that user is
checked instead. `systemd-analyze verify` runs on the units in test_deploy.py.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from test_deploy import SERVICES, SYSTEMD, Unit, expand

README = SYSTEMD / "README.md"
TOKENREFRESH = Path(sys.executable).with_name("tokenrefresh")
SYSTEMD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"  # systemd's default PATH
STATE_ROOT = "/var/lib"  # %S for system units


@dataclass(frozen=True)
class Admin:
    """The README's `tokenrefresh-admin` shell function: the properties it gives systemd-run."""

    properties: list[tuple[str, str]]
    executable: str

    @classmethod
    def from_readme(cls) -> Admin:
        text = README.read_text(encoding="utf-8")
        match = re.search(r"^tokenrefresh-admin\(\) \{\n(.*?)^\}", text, re.MULTILINE | re.DOTALL)
        assert match, "the README defines tokenrefresh-admin"
        body = match.group(1).replace("\\\n", " ")
        properties = [tuple(value.split("=", 1)) for value in re.findall(r"-p (\S+)", body)]
        (executable,) = re.findall(r"(/\S+/tokenrefresh) \"\$@\"", body)
        return cls([(key, value) for key, value in properties], executable)

    def values(self, key: str) -> list[str]:
        return [value for name, value in self.properties if name == key]

    def environment(self) -> dict[str, str]:
        return dict(value.split("=", 1) for value in self.values("Environment"))

    def credentials(self) -> dict[str, str]:
        return dict(value.split(":", 1) for value in self.values("LoadCredential"))


def install_block() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Install\n+```sh\n(.*?)^```", text, re.MULTILINE | re.DOTALL)
    assert match
    return match.group(1)


def admin_steps() -> list[list[str]]:
    """The install steps that run `tokenrefresh-admin ...` (step 5), as arguments."""
    steps = []
    for line in install_block().splitlines():
        if line.startswith("tokenrefresh-admin "):
            steps.append(shlex.split(line, comments=True)[1:])
    return steps


def sqlite_url_of_step_3() -> str:
    (url,) = re.findall(r"#\s+SQLite:\s+(sqlite:///\S+)", install_block())
    return url


class Host:
    """The host of the recipe, under tmp_path: /etc/tokenrefresh, /var/lib, credentials."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.state_root = root / "var-lib"  # %S
        self.etc = root / "etc-tokenrefresh"
        self.etc.mkdir(mode=0o700)

    def path(self, path: str) -> str:
        """A path of the recipe, moved under tmp_path."""
        for real, here in ((STATE_ROOT, self.state_root), ("/etc/tokenrefresh", self.etc)):
            if path.startswith(real + "/"):
                return str(here) + path.removeprefix(real)
        return path

    def write_secrets(self) -> None:
        """Step 3: the key from `tokenrefresh keys generate`, the SQLite URL, the app."""
        key = subprocess.run(
            ["env", "-i", str(TOKENREFRESH), "keys", "generate"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        url = sqlite_url_of_step_3()
        path = url.removeprefix("sqlite:///")
        contents = {
            "encryption-keys": key,
            "database-url": "sqlite:///" + self.path(path) + "\n",
            "client-key": "systemd-recipe-client-key\n",
            "client-secret": "systemd-recipe-client-secret\n",
        }
        for name, content in contents.items():
            (self.etc / name).write_text(content)
            (self.etc / name).chmod(0o600)

    def start(self, name: str, credentials: dict[str, str], state_directory: str) -> Path:
        """What systemd does before ExecStart=: the StateDirectory (0700), the credentials."""
        (self.state_root / state_directory).mkdir(mode=0o700, parents=True, exist_ok=True)
        directory = self.root / "run-credentials" / name
        if directory.exists():
            shutil.rmtree(directory)
        directory.mkdir(parents=True)
        for credential, source in credentials.items():
            shutil.copyfile(self.path(source), directory / credential)
            (directory / credential).chmod(0o400)
        return directory

    def run(
        self, environment: dict[str, str], argv: list[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        assignments = [f"{name}={value}" for name, value in environment.items()]
        return subprocess.run(
            ["env", "-i", *assignments, str(TOKENREFRESH), *argv],
            input=stdin,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def basics(self, credentials: Path) -> dict[str, str]:
        """What systemd puts in every service's environment (User=tokenrefresh)."""
        return {
            "PATH": SYSTEMD_PATH,
            "HOME": str(self.state_root / "tokenrefresh"),
            "LANG": "C.UTF-8",
            "CREDENTIALS_DIRECTORY": str(credentials),
        }

    def admin(
        self, admin: Admin, argv: list[str], stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        (state_directory,) = admin.values("StateDirectory")
        credentials = self.start("tokenrefresh-admin", admin.credentials(), state_directory)
        environment = self.basics(credentials)
        for name, value in admin.environment().items():
            value = value.replace("$credentials", str(credentials))
            environment[name] = str(self.state_root) if value == STATE_ROOT else self.path(value)
        return self.run(environment, argv, stdin)

    def service(
        self, unit: Unit, extra: Mapping[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """The unit's ExecStart= as systemd starts it (`extra`: a test's own variables)."""
        state_directory = unit.value("Service", "StateDirectory")
        credentials = self.start(unit.name, unit.credentials(), state_directory)
        specifiers = {"d": str(credentials), "S": str(self.state_root), "n": unit.name}
        environment = self.basics(credentials)
        environment |= {k: expand(v, specifiers) for k, v in unit.environment().items()}
        executable, *argv = shlex.split(unit.value("Service", "ExecStart"))
        assert executable == "/opt/tokenrefresh/bin/tokenrefresh"
        return self.run(environment | dict(extra or {}), argv)


@pytest.fixture
def host(tmp_path: Path) -> Host:
    assert TOKENREFRESH.is_file()
    return Host(tmp_path)


def test_tokenrefresh_admin_has_the_units_identity_and_configuration() -> None:
    """The manual commands see what the timers see: same user, state, credentials, files."""
    assert_admin_has_the_units_configuration(
        Admin.from_readme(), Unit.load("tokenrefresh-refresh.service")
    )


def assert_admin_has_the_units_configuration(admin: Admin, refresh: Unit) -> None:
    assert admin.executable == shlex.split(refresh.value("Service", "ExecStart"))[0]
    for key in ("User", "Group", "StateDirectory", "StateDirectoryMode"):
        assert admin.values(key) == refresh.values("Service", key), key
    assert admin.credentials() == refresh.credentials()
    expected = {
        name: value.replace("%d", "$credentials").replace("%S", STATE_ROOT)
        for name, value in refresh.environment().items()
    }
    assert admin.environment() == expected


def test_the_install_steps_create_the_sqlite_database_for_the_timers(host: Host) -> None:
    admin = Admin.from_readme()
    assert admin_steps() == [["db", "upgrade", "--create"], ["status"]]
    host.write_secrets()
    database = Path(host.path(sqlite_url_of_step_3().removeprefix("sqlite:///")))
    refresh = Unit.load("tokenrefresh-refresh.service")

    # Without step 5 the first tick stops, and creates nothing (the failure).
    early = host.service(refresh)
    assert early.returncode == 3, early.stderr
    assert early.stderr == (
        f"error: TOKENREFRESH_DATABASE_URL: there is no database at {database}; check the "
        "path, or create it with `tokenrefresh db upgrade --create`\n"
    )
    assert not database.exists()

    upgrade, status = (host.admin(admin, argv) for argv in admin_steps())
    assert (upgrade.returncode, upgrade.stderr) == (0, "")
    assert status.returncode == 0, status.stderr
    assert "Last refresh: never" in status.stdout
    assert database.is_file()
    assert database.stat().st_mode & 0o777 == 0o600

    for name in SERVICES:
        tick = host.service(Unit.load(name))
        assert (tick.returncode, tick.stdout, tick.stderr) == (0, "", ""), name

    after = host.admin(admin, ["status", "--json"])
    assert after.returncode == 0, after.stderr
    report = json.loads(after.stdout)
    assert report["keys_configured"] is True
    assert {command: run["outcome"] for command, run in report["last_runs"].items()} == {
        "refresh": "ok",
        "cleanup": "ok",
    }
