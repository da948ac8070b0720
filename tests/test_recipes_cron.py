"""The cron recipe as written: docs/deployment.md "Cron", crontab.example and
deploy/cron/tokenrefresh-admin.

Jobs run the way cron runs them: `/bin/sh -c COMMAND` in an empty environment with HOME,
LOGNAME, SHELL=/bin/sh and PATH=/usr/bin:/bin, then the crontab's variable lines. The only
liberty taken is the paths: /etc/tokenrefresh and /opt/tokenrefresh/bin are moved under
tmp_path (the latter to the virtualenv under test), in the crontab and in the README's
commands alike; and tokenrefresh-admin reads the crontab through --crontab FILE, since the
test installs none with `crontab`.

Issue 18: going from the quick start to cron generated a new key for the database the
quick start had filled, and cron had no way to run manual commands with its configuration.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from test_deploy import CRONTAB, ROOT, command_options

CRON_DOCS = ROOT / "docs" / "deployment.md"
ADMIN = ROOT / "deploy" / "cron" / "tokenrefresh-admin"
VENV_BIN = Path(sys.executable).parent
CRON_PATH = "/usr/bin:/bin"  # cron's PATH, until the crontab sets its own
QUICK_START_LINE = (
    '{"open_id": "creator-0001", "access_token": "act.cron-recipe", "refresh_token": '
    '"rft.cron-recipe", "expires_in": 86400, "refresh_expires_in": 15552000, '
    '"scope": "user.info.basic"}\n'
)
RUNTIME_NOISE = {"PWD", "OLDPWD", "SHLVL", "_"}  # what a shell adds on its own


def crontab_variables(text: str) -> dict[str, str]:
    """A crontab's NAME=value lines, with cron's rules (blanks around =, quotes dropped)."""
    found = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*(.*?)\s*", line)
        if match is None:
            continue
        name, value = match.groups()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        found[name] = value
    return found


def crontab_jobs(text: str) -> dict[str, str]:
    """The command of each job line, by tokenrefresh subcommand."""
    jobs = {}
    for line in text.splitlines():
        fields = line.split(None, 5)
        if len(fields) == 6 and not line.lstrip().startswith("#") and "=" not in fields[0]:
            jobs[shlex.split(fields[5])[1]] = fields[5]
    return jobs


def cron_environment(crontab: str) -> dict[str, str]:
    """The environment cron gives a job of this crontab."""
    base = {"HOME": os.environ["HOME"], "LOGNAME": logname(), "SHELL": "/bin/sh"}
    return {**base, "PATH": CRON_PATH, **crontab_variables(crontab)}


def logname() -> str:
    return subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout.strip()


def run_job(crontab: str, command: str) -> subprocess.CompletedProcess[str]:
    environment = cron_environment(crontab)
    return subprocess.run(
        ["/bin/sh", "-c", command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_admin(
    crontab_file: Path, *args: str, stdin: str | None = None, **extra: str
) -> subprocess.CompletedProcess[str]:
    """tokenrefresh-admin from a shell whose environment has `extra` too."""
    return subprocess.run(
        [str(ADMIN), "--crontab", str(crontab_file), *args],
        env={"HOME": os.environ["HOME"], "PATH": os.environ["PATH"], **extra},
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def recorded(result: subprocess.CompletedProcess[str]) -> tuple[dict[str, str], str]:
    """The environment and arguments the recording `tokenrefresh` saw."""
    assert result.returncode == 0, result.stderr
    *lines, args = result.stdout.splitlines()
    environment = dict(line.split("=", 1) for line in lines)
    return {k: v for k, v in environment.items() if k not in RUNTIME_NOISE}, args


class Install:
    """The recipe's paths under tmp_path."""

    def __init__(self, tmp_path: Path, bin_dir: Path) -> None:
        self.etc = tmp_path / "etc-tokenrefresh"
        self.etc.mkdir(mode=0o700)
        self.bin_dir = bin_dir
        self.crontab_file = tmp_path / "crontab"

    def moved(self, text: str) -> str:
        text = text.replace("/etc/tokenrefresh", str(self.etc))
        return text.replace("/opt/tokenrefresh/bin", str(self.bin_dir))

    def crontab(self, *, sqlite: bool = False) -> str:
        lines = CRONTAB.read_text(encoding="utf-8").splitlines(keepends=True)
        if sqlite:  # as the README says for SQLite
            lines = [
                line for line in lines if not line.startswith("TOKENREFRESH_DATABASE_URL_FILE")
            ]
        text = self.moved("".join(lines))
        self.crontab_file.write_text(text)
        return text


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def recorder(tmp_path: Path) -> Path:
    """A folder whose `tokenrefresh` prints its environment, then its arguments."""
    folder = tmp_path / "bin"
    folder.mkdir()
    (folder / "tokenrefresh").write_text('#!/bin/sh\nenv\nprintf "%s\\n" "$*"\n')
    (folder / "tokenrefresh").chmod(0o755)
    return folder


def test_the_wrapper_parses_variable_lines_like_cron(
    tmp_path: Path, home: Path, recorder: Path
) -> None:
    crontab = (
        "# A=commented\n"
        f"PATH={recorder}:/usr/bin:/bin\n"
        '  SPACED = "two words"  \n'
        "SINGLE='x y'\n"
        "EMPTY=\n"
        "*/5 * * * * NOT_A_VARIABLE=1 tokenrefresh status\n"
    )
    file = tmp_path / "crontab"
    file.write_text(crontab)

    environment, args = recorded(run_admin(file, "status", "--json", "a b"))

    assert environment == cron_environment(crontab)
    assert crontab_variables(crontab) == {
        "PATH": f"{recorder}:/usr/bin:/bin",
        "SPACED": "two words",
        "SINGLE": "x y",
        "EMPTY": "",
    }
    assert args == "status --json a b"


def test_the_wrapper_runs_tokenrefresh_with_exactly_the_crontab_jobs_configuration(
    tmp_path: Path, home: Path, recorder: Path
) -> None:
    install = Install(tmp_path, recorder)
    crontab = install.crontab()
    jobs = crontab_jobs(crontab)
    assert set(jobs) == {"refresh", "cleanup"}

    # The quick start's key in the shell is not passed on: the crontab's _FILE is the key.
    admin, args = recorded(
        run_admin(install.crontab_file, "status", TOKENREFRESH_ENCRYPTION_KEYS="k")
    )

    assert args == "status"
    for command, line in jobs.items():
        job, job_args = recorded(run_job(crontab, line))
        assert job_args == shlex.join(shlex.split(line)[1:]), command
        assert admin == job, command
    variables = crontab_variables(CRONTAB.read_text(encoding="utf-8"))
    assert {n for n in admin if n.startswith(("TOKENREFRESH_", "TIKTOK_"))} == {
        n for n in variables if n.startswith(("TOKENREFRESH_", "TIKTOK_"))
    }
    assert admin["TOKENREFRESH_ENCRYPTION_KEYS_FILE"] == f"{install.etc}/encryption-keys"


def readme_cron_block() -> str:
    text = CRON_DOCS.read_text(encoding="utf-8")
    match = re.search(r"<!-- cron:install -->\s*```sh\n(.*?)```", text, re.DOTALL)
    assert match, "docs/deployment.md has the cron:install block"
    return match.group(1)


def readme_key_step() -> str:
    (line,) = [line for line in readme_cron_block().splitlines() if "encryption-keys)" in line]
    return line


def readme_admin_steps() -> list[list[str]]:
    prefix = "/opt/tokenrefresh/bin/tokenrefresh-admin "
    return [
        shlex.split(line.removeprefix(prefix), comments=True)
        for line in readme_cron_block().splitlines()
        if line.startswith(prefix)
    ]


def generate_key() -> str:
    command = [str(VENV_BIN / "tokenrefresh"), "keys", "generate"]
    return subprocess.run(command, capture_output=True, text=True, check=True).stdout.strip()


def quick_start(home: Path, key: str) -> None:
    """The quick start's shell: the key in a variable, accounts in the default database."""
    result = subprocess.run(
        [str(VENV_BIN / "tokenrefresh"), "accounts", "import", "-q", "-"],
        input=QUICK_START_LINE,
        env={"HOME": str(home), "PATH": CRON_PATH, "TOKENREFRESH_ENCRYPTION_KEYS": key},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def step_2(install: Install, home: Path, **shell: str) -> None:
    """README step 2, as written, from a shell that has `shell` in its environment."""
    subprocess.run(
        ["/bin/sh", "-c", install.moved(readme_key_step())],
        env={"HOME": str(home), "PATH": CRON_PATH, **shell},
        check=True,
        timeout=120,
    )
    for name in ("client-key", "client-secret"):
        (install.etc / name).write_text(f"cron-recipe-{name}\n")
        (install.etc / name).chmod(0o600)


def test_from_the_quick_start_to_cron_the_key_is_kept(tmp_path: Path, home: Path) -> None:
    key = generate_key()
    quick_start(home, key)
    install = Install(tmp_path, VENV_BIN)

    step_2(install, home, TOKENREFRESH_ENCRYPTION_KEYS=key)
    key_file = install.etc / "encryption-keys"
    assert key_file.read_text() == key + "\n"
    assert key_file.stat().st_mode & 0o777 == 0o600
    crontab = install.crontab(sqlite=True)

    assert readme_admin_steps() == [["db", "upgrade", "-q"], ["keys", "check"], ["status"]]
    for argv in readme_admin_steps():
        result = run_admin(install.crontab_file, *argv, TOKENREFRESH_ENCRYPTION_KEYS=key)
        assert result.returncode == 0, (argv, result.stderr)
        assert "Keys: none configured" not in result.stdout
    for command, line in crontab_jobs(crontab).items():
        job = run_job(crontab, line)
        assert (job.returncode, job.stdout, job.stderr) == (0, "", ""), command


def readme_logged_jobs() -> dict[str, str]:
    """The cron page's job lines that append their output to a log file."""
    text = CRON_DOCS.read_text(encoding="utf-8")
    block = text[text.index("**Output without mail.**") :].split("```")[1]
    return crontab_jobs(block)


def test_a_log_file_keeps_what_cron_would_have_mailed(tmp_path: Path, home: Path) -> None:
    key = generate_key()
    quick_start(home, key)
    install = Install(tmp_path, VENV_BIN)
    step_2(install, home, TOKENREFRESH_ENCRYPTION_KEYS=key)
    crontab = install.crontab(sqlite=True)
    logs = tmp_path / "log"
    logs.mkdir()
    jobs = {
        command: line.replace("/var/log/tokenrefresh", str(logs))
        for command, line in readme_logged_jobs().items()
    }
    assert {c: shlex.split(line)[:2] for c, line in jobs.items()} == {
        c: shlex.split(line)[:2] for c, line in crontab_jobs(crontab).items()
    }

    for command, line in jobs.items():
        job = run_job(crontab, line)
        assert (job.returncode, job.stdout, job.stderr) == (0, "", ""), command
        assert (logs / f"{command}.log").read_text() == "", "-q: nothing when all is well"
    (install.etc / "client-secret").unlink()  # something for the log to say
    assert run_job(crontab, jobs["refresh"]).stdout == ""
    assert (logs / "refresh.log").read_text() == (
        f"error: cannot read TIKTOK_CLIENT_SECRET_FILE ({install.etc}/client-secret): "
        "No such file or directory\n"
    )


def test_a_new_key_over_stored_tokens_is_refused_naming_the_key_file(
    tmp_path: Path, home: Path
) -> None:
    """Step 2 in a shell without the key generates one: the jobs then stop, and say where
    the key came from, without suggesting yet another new key."""
    quick_start(home, generate_key())
    install = Install(tmp_path, VENV_BIN)
    step_2(install, home)
    crontab = install.crontab(sqlite=True)

    job = run_job(crontab, crontab_jobs(crontab)["refresh"])

    assert job.returncode == 3
    assert job.stderr == (
        f"error: no key in TOKENREFRESH_ENCRYPTION_KEYS_FILE ({install.etc}/encryption-keys) "
        "decrypts what this database stores (a wrong key, or the key the tokens were encrypted "
        "with was removed before `tokenrefresh keys rotate`); nothing was changed. Configure "
        "the key these tokens were stored with: a new key cannot read them\n"
    )


def test_metrics_files_are_one_per_job() -> None:
    """crontab.example's metrics lines (commented out) and the systemd units."""
    lines = [
        line.lstrip("# ")
        for line in CRONTAB.read_text(encoding="utf-8").splitlines()
        if "--metrics-file" in line
    ]
    files = {shlex.split(line.split(None, 5)[5])[1]: line.split()[-1] for line in lines}
    for command in files:
        assert "--metrics-file" in command_options(command)
    assert files == {
        "refresh": "/var/lib/node_exporter/textfile_collector/tokenrefresh-refresh.prom",
        "cleanup": "/var/lib/node_exporter/textfile_collector/tokenrefresh-cleanup.prom",
    }
    units = {
        name: re.findall(
            r"TOKENREFRESH_METRICS_FILE=(\S+)",
            (ROOT / "deploy" / "systemd" / f"tokenrefresh-{name}.service").read_text(),
        )
        for name in files
    }
    assert units == {name: [path] for name, path in files.items()}
