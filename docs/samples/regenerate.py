"""Run the walk of the user guide on a fresh demo and write what it printed into the docs.

    .venv/bin/python docs/samples/regenerate.py [--keep]

It starts `bin/run` on a temporary data dir and free ports (the demo user, local builders, the
SSH gateway; GitHub and FAS are a loopback stand-in where no account exists), runs the commands
the docs show, in order, as the demo user in a home of their own, stops the demo with Ctrl-C,
and replaces each block marked `<!-- sample: NAME -->` in the docs (blocks.py) with what the
command printed, made stable (normalize.py). It needs what `bin/run` needs (sshd, rpmbuild) and
curl, takes three to five minutes, and changes nothing outside the docs and its temporary folder
(`--keep` keeps that folder, with the demo's log, and prints where it is).
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import shutil
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from blocks import ROOT, SAMPLES, rewrite  # noqa: E402 (this folder is not a package)
from demo import Demo, KeyServer, Shell, WalkError, wait_for  # noqa: E402
from normalize import Normalizer, shortened  # noqa: E402

CHROOT = "fedora-rawhide-x86_64"
PROJECT = "demo/hello-coprssh"
SPEC = ROOT / "tests" / "builds" / "specs" / "check-fails.spec"
FINISHED = ("succeeded", "failed", "canceled")


class Walk:
    """The user guide's commands, in its order; `samples` collects what they printed."""

    def __init__(self, work: Path, demo: Demo) -> None:
        self.work = work
        self.demo = demo
        self.shell = Shell(work, demo)
        self.samples: dict[str, str] = {}
        self.normalize: Normalizer | None = None
        self.stranger = work / "stranger"
        # The builders kept for builds #2 and #3, and the build that waits for a slot.
        self.kept: dict[str, Any] = {}
        self.other: dict[str, Any] = {}
        self.queued = 0
        # The walk's first build: the guide calls it #2, as on a demo without builds of its own;
        # the demo's own builds (#1 and #2 on a fresh one) come first, so `b(2)` is its real number.
        self.first = 2

    # --- helpers ---------------------------------------------------------------------------

    def b(self, number: int) -> int:
        """The real number of the walk's build that the guide's order calls `number` (2, 3, …)."""
        return self.first + number - 2

    def sample(self, name: str, text: str) -> None:
        if name not in SAMPLES:
            raise WalkError(f"sample {name!r} is not in blocks.SAMPLES")
        self.samples[name] = text.rstrip("\n")

    def typed(self, command: str, **kwargs: Any) -> str:
        return self.shell.typed(command, **kwargs)

    def api(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.demo.api(method, path, body)

    def finished(self, build: int) -> dict[str, Any]:
        def ended() -> dict[str, Any] | None:
            found: dict[str, Any] = self.api("GET", f"builds/{build}/")
            return found if found["state"] in FINISHED else None

        return wait_for(f"build #{build} to end", ended, timeout=180)

    def ssh_builder(self, build: int) -> dict[str, Any]:
        """The ready SSH builder of the build's chroot; its port becomes a fixed one in the docs."""

        def ready() -> dict[str, Any] | None:
            [phase] = [c for c in self.api("GET", f"builds/{build}/")["chroots"] if c["name"] == CHROOT]
            found = phase.get("ssh_builder")
            if not isinstance(found, dict):
                return None
            builder: dict[str, Any] = self.api("GET", f"ssh-builders/{found['id']}/")
            return builder if builder["state"] == "ready" else None

        builder = wait_for(f"the SSH builder of build #{build}", ready, timeout=180)
        assert self.normalize is not None
        self.normalize.add_port(int(builder["port"]))
        # Trusted as the API names them, as a careful user does (the docs show how).
        for home in (self.shell.home, self.stranger):
            with (home / ".ssh" / "known_hosts").open("a") as known:
                known.writelines(f"{line}\n" for line in builder["known_hosts"])
        return builder

    def on_builder(self, builder: dict[str, Any], command: str, **kwargs: Any) -> str:
        """`command` run on the builder, shown at a `#` prompt as if typed there."""
        login = f"ssh -p {builder['port']} {builder['user']}@{builder['host']} {shlex.quote(command)}"
        return self.typed(login, shown=command, prompt="#", **kwargs)

    def backend_log(self, build: int, until: str) -> list[str]:
        path = self.demo.data / "storage" / PROJECT / CHROOT / f"{build:08d}" / "backend.log"

        def written() -> str | None:
            text = path.read_text() if path.exists() else ""
            return text if until in text else None

        return wait_for(f"{until!r} in the backend.log of build #{build}", written).splitlines()

    def curl(self, path: str, *options: str) -> str:
        """A curl command line as the docs show it (the demo's real URL, normalized later)."""
        return " ".join(
            ['curl -s -H "Authorization: Token $TOKEN"', *options, f"{self.demo.url}/api/v1/{path}"]
        )

    def curl_json(self, path: str) -> str:
        """A GET with curl, its answer indented by Python's json.tool."""
        return self.curl(path) + " \\\n    | python3 -m json.tool --no-ensure-ascii"

    # --- the walk --------------------------------------------------------------------------

    def prepare(self) -> None:
        self.shell.add_identity(self.shell.home, "me@laptop")
        self.shell.add_identity(self.stranger, "someone@elsewhere")
        shutil.copy(SPEC, self.shell.cwd / SPEC.name)
        login = self.typed(f"coprssh login --url {self.demo.url} --token $TOKEN")
        if "Logged in" not in login:
            raise WalkError(f"coprssh login failed: {login}")
        self.sample("login", login)
        # Times in the docs start at a whole minute: wait for the next one.
        time.sleep(60.5 - time.time() % 60)
        start = datetime.now(UTC)
        self.normalize = Normalizer(
            start=start,
            gateway_port=self.demo.gateway_port,
            literals={
                self.demo.url: "http://127.0.0.1:8000",
                str(self.demo.data): "/home/me/coprssh/data",
                str(self.shell.home): "/home/me",
                str(self.shell.cwd): "/home/me/work",
            },
        )

    def keep_on_failure(self) -> None:
        """Section 2 and the introduction: builds #2 and #3 fail and keep their builders; #4 cannot."""
        out = self.typed(
            f"coprssh build {PROJECT} check-fails.spec --chroot {CHROOT} \\\n"
            "      --ssh-on-failure --key ~/.ssh/id_ed25519.pub --watch"
        )
        lines = out.splitlines()
        submitted = re.search(r"^Submitted build #(\d+) ", out, re.MULTILINE)
        if submitted is None:
            raise WalkError(f"coprssh build said no build number:\n{out}")
        self.first = int(submitted.group(1))
        head = next(i for i, line in enumerate(lines) if line.startswith("=== Build"))
        tail = next(i for i, line in enumerate(lines) if "check: expected" in line and "+ echo" not in line)
        self.sample("build-keep-on-failure", "\n".join([*lines[: head + 1], "…", *lines[tail:]]))
        self.kept = self.ssh_builder(self.b(2))

        command = self.curl(
            "builds/",
            f"-F project={PROJECT} \\\n    -F chroots={CHROOT} -F source_file=@check-fails.spec \\\n"
            '    -F ssh_on_failure=true -F "ssh_public_keys=$(cat ~/.ssh/id_ed25519.pub)" \\\n   ',
        )
        _, out = self.shell.run(command)
        shape = {
            "id": None,
            "project": None,
            "state": None,
            "ssh": None,
            "ssh_on_failure": None,
            "chroots": [("name", "state", "not_kept_reason", "ssh_builder")],
        }
        self.sample("api-build-keep-on-failure", f"$ {command}\n{shortened(json.loads(out), shape)}")
        self.finished(self.b(3))
        self.other = self.ssh_builder(self.b(3))

        lines = self.backend_log(self.b(2), "copr-builder help")
        first = next(i for i, line in enumerate(lines) if "Finished:" in line)
        self.sample("kept-backend-log", "\n".join(lines[first:]))
        self.sample("ready-mail", self.mail(self.b(2)))

        # Both SSH slots are in use: the builder of the next failure is not kept.
        self.shell.run(
            f"coprssh build {PROJECT} check-fails.spec --chroot {CHROOT} --ssh-on-failure"
            " --key ~/.ssh/id_ed25519.pub --watch",
            timeout=180,
        )
        lines = self.backend_log(self.b(4), "not kept")
        self.sample("not-kept-backend-log", "\n".join(line for line in lines if "not kept" in line))

    def mail(self, build: int) -> str:
        """The ready mail of `build`, as the task cluster printed it (without its technical headers)."""
        subject = f"Subject: [coprssh] SSH builder ready: build #{build} of"

        def printed() -> list[str] | None:
            lines = self.demo.log.read_text(errors="replace").splitlines()
            starts = [i for i, line in enumerate(lines) if line.startswith(subject)]
            if not starts:
                return None
            ends = [i for i, line in enumerate(lines) if i > starts[0] and line == "-" * 79]
            return lines[starts[0] : ends[0]] if ends else None

        lines = wait_for(f"the ready mail of build #{build}", printed)
        other = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ |\[\d\d/\w+/\d{4} |Date: |Message-ID: )")
        return "\n".join(line for line in lines if not other.match(line)).rstrip("\n")

    def refused_keys(self) -> None:
        """Keys refused line by line (the API), and an unknown GitHub account (the CLI)."""
        ssh = self.shell.home / ".ssh"
        own = (ssh / "id_ed25519.pub").read_text().strip()
        self.shell.run(f"ssh-keygen -q -t dsa -N '' -C old@laptop -f {self.work}/dsa")
        old = (self.work / "dsa.pub").read_text().strip()
        (self.shell.cwd / "bad-keys.txt").write_text(f"no-pty {own}\n{old}\n")
        self.sample(
            "api-key-errors",
            self.typed(
                self.curl(
                    f"builds/{self.b(2)}/resubmit/", "--data-urlencode ssh_public_keys@bad-keys.txt \\\n   "
                )
                + " | python3 -m json.tool --no-ensure-ascii"
            ),
        )
        self.sample("github-unknown", self.typed(f"coprssh resubmit {self.b(2)} --github no-such-user-xyz"))

    def log_in(self) -> None:
        """Section 4 and 5: find the builder, check its host key, look around, rerun the build."""
        self.sample(
            "ssh-builders",
            self.typed("coprssh ssh-builders") + "\n" + self.typed(f"coprssh ssh {self.b(2)} --print"),
        )
        kept = self.kept
        target = f"-p {kept['port']} {kept['user']}@127.0.0.1"
        self.sample(
            "ssh-keyscan",
            self.typed(f"ssh-keyscan -p {kept['port']} -t ed25519 127.0.0.1 > builder.known_hosts")
            + self.typed("ssh-keygen -lf builder.known_hosts")
            + self.typed(
                "ssh -o StrictHostKeyChecking=yes -o UserKnownHostsFile=builder.known_hosts -o BatchMode=yes \\\n"
                f"      {target} true"
            ),
        )
        help_text = self.on_builder(kept, "copr-builder help")
        self.sample("copr-builder-help", help_text)
        self.sample("copr-builder-show", self.on_builder(kept, "copr-builder show"))
        found = re.search(r"\(work directory: (\S+)\)", help_text)
        if found is None:
            raise WalkError(f"copr-builder help names no work directory:\n{help_text}")
        workdir = found.group(1)
        self.sample("workdir", self.on_builder(kept, f"ls -la {workdir}"))
        self.sample(
            "rerun",
            self.on_builder(kept, f"cd {workdir} && python3 coprssh_agent.py run {workdir}; echo exit=$?")
            + self.on_builder(kept, f"tail -5 {workdir}/builder-live.log"),
        )
        self.sample("permission-denied", self.typed(f"ssh {target} true", home=self.stranger))

    def from_the_builder(self) -> None:
        """Section 6 on the builder: prolong, then give the builder of build #2 back."""
        kept = self.kept
        login = f"ssh -o LogLevel=ERROR -tt -p {kept['port']} {kept['user']}@{kept['host']}"
        self.sample(
            "copr-builder-prolong-release",
            "\n".join(
                [
                    self.on_builder(kept, "copr-builder prolong --hours 2"),
                    self.on_builder(kept, "copr-builder prolong --hours 48"),
                    self.shell.answered(
                        f"{login} copr-builder release",
                        question="[y/N]",
                        answer="n\n",
                        shown="copr-builder release",
                    ),
                    self.on_builder(kept, "copr-builder release --yes"),
                ]
            ),
        )

    def resubmit_with_ssh(self) -> None:
        """Section 3 (API and CLI), the quota, section 6 from your machine and the queue of section 7."""
        command = self.curl(
            f"builds/{self.b(2)}/resubmit/",
            '-H "Content-Type: application/json" \\\n   ',
            '-d "{\\"ssh_public_keys\\": \\"$(cat ~/.ssh/id_ed25519.pub)\\"}" \\\n   ',
        )
        _, out = self.shell.run(command)
        answer = json.loads(out)
        shape = {
            "id": None,
            "project": None,
            "state": None,
            "ssh": None,
            "resubmitted_from": None,
            "chroots": [
                {
                    "name": None,
                    "state": None,
                    "ssh_builder": {
                        "id": None,
                        "state": None,
                        "queue_reason": None,
                        "ssh_command": None,
                        "expires_at": None,
                        "url": None,
                    },
                }
            ],
            "srpm": ("state", "status_reason"),
        }
        self.sample("api-resubmit-ssh", f"$ {command}\n{shortened(answer, shape)}")
        build = int(answer["id"])
        builder = self.ssh_builder(build)
        ident = builder["id"]
        self.sample(
            "api-ssh-builder",
            self.typed(self.curl_json(f"ssh-builders/{ident}/")),
        )
        self.sample("api-quota", self.typed(self.curl_json("quota/")))
        self.sample(
            "prolong-release",
            "\n".join(
                self.typed(command)
                for command in (
                    f"coprssh prolong {ident} --hours 2",
                    f"coprssh prolong {ident} --hours 48",
                    f"coprssh release {ident} --yes",
                    f"coprssh release {ident} --yes",
                )
            ),
        )
        self.sample(
            "resubmit-ssh", self.typed(f"coprssh resubmit {self.b(2)} --ssh --key ~/.ssh/id_ed25519.pub")
        )
        self.ssh_builder(build + 1)
        self.sample("quota", self.typed("coprssh quota"))
        self.sample(
            "queue-reason", self.typed(f"coprssh resubmit {self.b(2)} --ssh --key ~/.ssh/id_ed25519.pub")
        )
        self.queued = build + 2

        wait_for(f"port {builder['port']} to close", lambda: not listening(int(builder["port"])), timeout=120)
        self.sample(
            "connection-refused", self.typed(f"ssh -p {builder['port']} {builder['user']}@127.0.0.1 true")
        )

    def through_the_gateway(self) -> None:
        """Section 4, "No IPv6?": the pool through the gateway, its builders on ::1 only, ssh -4."""
        self.shell.run(f"coprssh cancel {self.queued}")
        listed = self.api("GET", "ssh-builders/")
        for builder in listed["results"] if isinstance(listed, dict) else listed:
            self.api("POST", f"ssh-builders/{builder['id']}/release/")
        self.demo.manage(
            "shell",
            "-c",
            "from builders.models import Builder, Pool, SshRoute\n"
            "from builders.services.common import Via\n"
            "from builders.services.machines import terminate_builder\n"
            "pool = Pool.objects.get(name='local')\n"
            "pool.provider_settings = {**pool.provider_settings, 'ipv6': True}\n"
            "pool.ssh_route = SshRoute.GATEWAY\n"
            "pool.save()\n"
            "for builder in Builder.objects.filter(pool=pool, state__in=['provisioning', 'ready', 'leased']):\n"
            "    terminate_builder(builder_id=builder.pk, via=Via(source='admin'))\n",
        )
        out = self.typed(f"coprssh resubmit 1 --chroot {CHROOT} --ssh --key ~/.ssh/id_ed25519.pub")
        build = int(out.splitlines()[-1])
        self.sample("gateway-resubmit", out + "\n" + self.typed(f"coprssh ssh {build} --print", timeout=240))
        builder = self.ssh_builder(build)
        ident, port, user = builder["id"], builder["port"], builder["user"]
        gateway = builder["gateway"]["proxy_jump"]
        self.sample(
            "gateway-api",
            self.typed(self.curl_json(f"ssh-builders/{ident}/")),
        )
        query = "import json, sys; print({})"
        self.sample(
            "gateway-config",
            self.typed(
                self.curl(f"ssh-builders/{ident}/")
                + " \\\n    | python3 -c '"
                + query.format('"\\n".join(json.load(sys.stdin)["known_hosts"])')
                + "' >> ~/.ssh/known_hosts"
            )
            + self.typed(
                self.curl(f"ssh-builders/{ident}/")
                + " \\\n    | python3 -c '"
                + query.format('json.load(sys.stdin)["ssh_config"], end=""')
                + "' >> ~/.ssh/config"
            )
            + self.typed("cat ~/.ssh/config"),
        )
        help_lines = self.typed(f"ssh coprssh-{ident} copr-builder help").splitlines()
        first = next(i for i, line in enumerate(help_lines) if line.startswith("Log in again"))
        last = next(i for i, line in enumerate(help_lines) if line.strip() == "Host coprssh-gateway")
        self.sample(
            "gateway-ipv4-only",
            self.typed(f"ssh -4 -p {port} {user}@::1", tty=True)
            + self.typed(f"ssh -4 -J {gateway} -p {port} {user}@::1 copr-builder show")
            + "\n".join([help_lines[0], "…", *help_lines[first : last + 1], "…"]),
        )
        host, _, gateway_port = gateway.partition("@")[2].rpartition(":")
        self.sample(
            "gateway-refusals",
            self.typed(f"ssh -p {gateway_port} coprssh-gw@{host}", timeout=30, tty=True)
            + self.typed(f"ssh -J {gateway} -p 22 root@127.0.0.1", timeout=30, tty=True),
        )
        released = self.typed(f"coprssh release {ident} --yes")

        def refused_now() -> str | None:
            out = self.typed(f"ssh coprssh-{ident} true")
            return out if "Permission denied" in out else None

        refused = wait_for("the gateway to refuse the released key", refused_now, timeout=60, every=2)
        self.sample("gateway-after-release", released + refused)


def listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return True
    except OSError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (demo log, data)")
    parser.add_argument("--show", action="store_true", help="print the samples instead of writing the docs")
    args = parser.parse_args(argv)
    if shutil.which("curl") is None:
        print("regenerate: curl is needed (the docs show curl commands)", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="coprssh-samples-"))
    keys = KeyServer()
    demo = Demo(work, keys)
    walk = Walk(work, demo)
    try:
        print(f"demo: {demo.url} (log: {demo.log})", flush=True)
        demo.start()
        walk.prepare()
        for step in (
            walk.keep_on_failure,
            walk.refused_keys,
            walk.log_in,
            walk.from_the_builder,
            walk.resubmit_with_ssh,
            walk.through_the_gateway,
        ):
            print(f"- {step.__doc__.splitlines()[0] if step.__doc__ else step.__name__}", flush=True)
            step()
    except Exception as exc:  # noqa: BLE001 - any failure: keep the folder and say where the log is
        print(f"regenerate: {exc!r}; the demo's log is {demo.log}", file=sys.stderr)
        args.keep = True
        return 1
    finally:
        demo.stop()
        keys.stop()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    missing = sorted(set(SAMPLES) - set(walk.samples))
    if missing:
        print(f"regenerate: the walk made no sample for: {', '.join(missing)}", file=sys.stderr)
        return 1
    assert walk.normalize is not None
    stable = {name: walk.normalize(walk.samples[name]) for name in SAMPLES}
    if args.show:
        for name, text in stable.items():
            print(f"<!-- sample: {name} -->\n{text}\n<!-- /sample -->\n")
        return 0
    for document in sorted(set(SAMPLES.values())):
        path = ROOT / document
        before = path.read_text()
        after = rewrite(before, stable, document)
        if after != before:
            path.write_text(after)
            print(f"rewrote {document}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
