#!/usr/bin/env python3
"""coprssh builder agent: runs one phase of a build on a builder. Python 3 standard library only.

The service uploads this file, a job.json and the sources into a work directory, then runs

    python3 coprssh_agent.py run WORKDIR

detached from the SSH session. The agent writes, inside WORKDIR:

    builder-live.log   everything the build prints, as it prints it
    status.json        {"state": "running" | "succeeded" | "failed" | "canceled", "pid": ..., ...}
    results/           the phase's products (SRPM and spec; or RPMs)
    success            present only when the phase succeeded

When job.json has a "report" section, the agent also sends the live log (chunks tagged with
their byte offset, so a chunk sent twice is harmless) and then its end to the service's API,
with a token that speaks for this phase only. The files above stay the record: a service that
hears nothing for a while looks at them over SSH.

SIGTERM (sent to the agent's process group by the service on cancel) stops the build.

Sources fetched here (a .src.rpm URL, a git repository) were checked by the service when the
build was submitted (builds/sources.py), with the rules of `address_problem` below. A server
may still redirect elsewhere, and a name may resolve differently now: the agent checks the host
again when it fetches, and checks every redirect before following it (at most 5). git is given
the URL the redirects end at and follows none of its own.
"""

from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

CHUNK = 64 * 1024
MAX_REDIRECTS = 5
GIT_PROBE = "/info/refs?service=git-upload-pack"

# Never fetched from, whatever an operator allows.
BENCHMARKING = ipaddress.ip_network("198.18.0.0/15")
THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
DOCUMENTATION = [
    ipaddress.ip_network(net)
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
]
# Private networks: an operator may allow them (COPRSSH_ALLOW_PRIVATE_SOURCES), e.g. for an
# internal git server.
PRIVATE = [
    ipaddress.ip_network(net)
    for net in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10", "fc00::/7", "fec0::/10")
]


def address_problem(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
    *,
    allow_local: bool = False,
    allow_private: bool = False,
) -> str:
    """Why a source must not be fetched from `address`, or "" when it may (shared with the service)."""
    if address.version == 6 and address.ipv4_mapped is not None:
        # ::ffff:127.0.0.1 reaches 127.0.0.1; and ::ffff:0:0/96 as a whole is "reserved".
        address = address.ipv4_mapped
    if address.version == 6 and address.sixtofour is not None:
        # 2002:7f00:1:: is 6to4 for 127.0.0.1: a relay would deliver it there.
        inner = address_problem(address.sixtofour, allow_local=allow_local, allow_private=allow_private)
        if inner:
            return f"a 6to4 address of {inner}"
    local = ""
    if address.is_loopback:
        local = "a loopback address"
    elif address.is_link_local:
        local = "a link-local address"
    elif address.is_unspecified or address in THIS_NETWORK:
        # Linux connects to 0.0.0.0 as if it were 127.0.0.1.
        local = "the unspecified address"
    if local:
        return "" if allow_local else local
    if address.is_multicast:
        return "a multicast address"
    if address.is_reserved:
        return "a reserved address"
    if any(address in net for net in PRIVATE if net.version == address.version):
        return "" if allow_private else "a private address"
    if address in BENCHMARKING:
        return "a benchmarking address"
    if any(address in net for net in DOCUMENTATION if net.version == address.version):
        return "a documentation address"
    if not address.is_global:
        return "not a public address"
    return ""


class Reporter:
    """Sends the live log and the end to the service; never lets a network failure stop the build."""

    INTERVAL = 1.0  # seconds between looks at the log: at most one report a second while it grows
    GIVE_UP = 300.0  # how long the end is retried against a service that does not answer

    def __init__(self, agent: Agent, config: dict[str, Any]) -> None:
        self.agent = agent
        self.url = str(config["url"]).rstrip("/") + "/"
        self.token = str(config["token"])
        self.chunk = int(config.get("chunk", 256 * 1024))
        self.heartbeat = float(config.get("heartbeat", 30))
        self.sent = 0  # bytes of the log the service holds
        self.last_sent = 0.0
        self.closed = False  # the service said the phase is over: stop talking
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, name="reporter", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def request(self, path: str, body: bytes, content_type: str) -> tuple[int, dict[str, Any]]:
        req = urllib.request.Request(
            self.url + path,
            data=body,
            method="POST",
            headers={"Authorization": f"PhaseToken {self.token}", "Content-Type": content_type},
        )
        try:
            timeout = 1 if self.agent.canceled else 20
            with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 - the service's own URL
                return response.status, json.loads(response.read(65536) or b"{}")
        except urllib.error.HTTPError as exc:
            try:
                answer = json.loads(exc.read(65536) or b"{}")
            except ValueError:
                answer = {}
            return exc.code, answer if isinstance(answer, dict) else {}

    def push(self) -> bool:
        """Send the next chunk of the log (or a heartbeat); True when everything written was sent."""
        if self.closed:
            return True
        size = os.path.getsize(self.agent.path("builder-live.log"))
        if self.sent >= size and time.monotonic() - self.last_sent < self.heartbeat:
            return True
        with open(self.agent.path("builder-live.log"), "rb") as handle:
            handle.seek(self.sent)
            data = handle.read(self.chunk)
        status, answer = self.request(f"log/?offset={self.sent}", data, "application/octet-stream")
        self.last_sent = time.monotonic()
        if status == 200 or (status == 409 and "log_size" in answer):
            # The service says where its copy ends: continue from there (a resend or a gap).
            self.sent = max(0, min(int(answer.get("log_size", self.sent)), size))
        elif status in (401, 403, 404) or (status == 409 and answer.get("code") == "phase_over"):
            self.closed = True
            return True
        elif status == 429:
            time.sleep(2)
        return self.sent >= size

    def loop(self) -> None:
        while not self.done.wait(self.INTERVAL):
            try:
                self.push()
            except (OSError, ValueError):
                time.sleep(1)  # the service is unreachable for now; the log waits on disk

    def finish(self, state: str, reason: str) -> None:
        """Send the rest of the log, then the end; give up after GIVE_UP seconds of trying.

        A stopped agent (SIGTERM: a cancel, or the machine going down) tries only briefly: it must
        not hold up the machine's shutdown, and a phase the service canceled refuses it anyway.
        """
        self.done.set()
        if self.agent.canceled:
            # One short try, without waiting for the reporting thread: the service pulls the rest of
            # the log itself, and its watchdog reads status.json if this report never arrives.
            size = os.path.getsize(self.agent.path("builder-live.log"))
            body = json.dumps({"state": state, "reason": reason[:1000], "log_size": size}).encode()
            with contextlib.suppress(OSError, ValueError):
                self.request("end/", body, "application/json")
            return
        self.thread.join(30)
        give_up = time.monotonic() + self.GIVE_UP
        pause = 0.5
        while not self.closed and time.monotonic() < give_up:
            try:
                before = self.sent
                if not self.push():
                    if self.sent > before:
                        continue  # more of the log went through: send the next chunk at once
                    time.sleep(pause)  # refused or failed: do not hammer the service
                    pause = min(pause * 2, 15)
                    continue
                size = os.path.getsize(self.agent.path("builder-live.log"))
                body = json.dumps({"state": state, "reason": reason[:1000], "log_size": size}).encode()
                status, _answer = self.request("end/", body, "application/json")
                if status == 200 or status in (401, 403, 404, 409):
                    return
            except (OSError, ValueError):
                pass
            time.sleep(pause)
            pause = min(pause * 2, 15)


class PhaseFailed(Exception):
    """The phase failed; the message is the last line written to the live log."""


class Agent:
    def __init__(self, workdir: str) -> None:
        self.workdir = os.path.abspath(workdir)
        with open(self.path("job.json"), encoding="utf-8") as handle:
            self.job = json.load(handle)
        self.results = self.path("results")
        os.makedirs(self.results, exist_ok=True)
        self.log = open(self.path("builder-live.log"), "ab", buffering=0)  # noqa: SIM115 - lives as long as the agent
        self.child: subprocess.Popen[bytes] | None = None
        self.deadline = time.monotonic() + float(self.job.get("timeout", 5 * 3600))
        self.canceled = False
        report = self.job.get("report")
        self.reporter = Reporter(self, report) if isinstance(report, dict) else None

    def path(self, *parts: str) -> str:
        return os.path.join(self.workdir, *parts)

    # --- output ------------------------------------------------------------------------

    def say(self, text: str) -> None:
        stamp = time.strftime("%H:%M:%S")
        self.log.write(f"[coprssh {stamp}] {text}\n".encode("utf-8", "replace"))

    def status(self, state: str, **extra: object) -> None:
        data = {"state": state, "pid": os.getpid(), "pgid": os.getpgid(0), "time": time.time(), **extra}
        temp = self.path("status.json.tmp")
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump(data, handle)
        os.replace(temp, self.path("status.json"))

    # --- running commands ----------------------------------------------------------------

    def run(self, argv: list[str], cwd: str | None = None, env: dict[str, str] | None = None) -> None:
        self.say("$ " + " ".join(argv))
        full_env = dict(os.environ)
        full_env.update({"LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "HOME": self.workdir})
        full_env.update(env or {})
        self.child = subprocess.Popen(
            argv,
            cwd=cwd or self.workdir,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=full_env,
        )
        while True:
            try:
                code = self.child.wait(timeout=1)
                break
            except subprocess.TimeoutExpired:
                if time.monotonic() > self.deadline:
                    self.child.kill()
                    self.child.wait()
                    raise PhaseFailed("the build took longer than its time limit and was stopped") from None
        self.child = None
        if self.canceled:
            raise PhaseFailed("canceled")
        if code != 0:
            raise PhaseFailed(f"{os.path.basename(argv[0])} failed with exit code {code}")

    def stop(self, signum: int, _frame: object) -> None:
        self.canceled = True
        if self.child is not None and self.child.poll() is None:
            self.child.terminate()

    # --- phases --------------------------------------------------------------------------

    def main(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        self.status("running")
        if self.reporter is not None:
            self.reporter.start()
        state, reason = self.run_phase()
        if self.reporter is not None:
            self.reporter.finish(state, reason)
        return 0 if state == "succeeded" else 1

    def run_phase(self) -> tuple[str, str]:
        """Run the job's phase; leave its status behind whatever happens, and return it."""
        phase = self.job["phase"]
        try:
            if phase == "srpm":
                self.srpm_phase()
            elif phase == "rpm":
                self.rpm_phase()
            else:
                raise PhaseFailed(f"unknown phase {phase!r}")
        except PhaseFailed as exc:
            state = "canceled" if self.canceled else "failed"
            self.say(f"{'Canceled' if self.canceled else 'Failed'}: {exc}")
            self.status(state, reason=str(exc))
            return state, str(exc)
        except Exception as exc:  # the agent must always leave a status behind
            self.say(f"Failed: internal error: {type(exc).__name__}: {exc}")
            self.status("failed", reason=f"internal error: {exc}")
            return "failed", f"internal error: {exc}"
        self.say("Succeeded.")
        open(self.path("success"), "w").close()
        self.status("succeeded")
        return "succeeded", ""

    def srpm_phase(self) -> None:
        source = self.job["source"]
        src = self.path("src")
        os.makedirs(src, exist_ok=True)
        kind = source["type"]
        if kind == "upload":
            name = source["file"]
            if name.endswith(".src.rpm"):
                self.take_srpm(self.path(name))
            else:
                self.build_srpm(self.path(name), sources=src)
        elif kind == "url":
            target = os.path.join(src, source["file"])
            self.download(source["url"], target, int(self.job.get("max_download", 512 * 1024 * 1024)))
            self.take_srpm(target)
        elif kind == "scm":
            # GIT_ALLOW_PROTOCOL keeps git to http(s): no ext::, no file://, no ssh.
            env = {"GIT_ALLOW_PROTOCOL": "http:https", "GIT_TERMINAL_PROMPT": "0"}
            clone_url = self.git_url(source["clone_url"])
            if clone_url != source["clone_url"]:
                self.say(f"The repository is at {clone_url}")
            # git follows no redirect of its own: git_url has followed and checked them.
            clone = ["git", "clone", "--quiet", "--config", "http.followRedirects=false"]
            self.run([*clone, "--", clone_url, src], env=env)
            if source.get("committish"):
                self.run(["git", "-C", src, "checkout", "--quiet", source["committish"], "--"], env=env)
            spec = os.path.realpath(os.path.join(src, source["spec"]))
            if not spec.startswith(os.path.realpath(src) + os.sep) or not os.path.isfile(spec):
                raise PhaseFailed(f"spec file {source['spec']!r} is not in the repository")
            self.build_srpm(spec, sources=os.path.dirname(spec))
        else:
            raise PhaseFailed(f"unknown source type {kind!r}")

    def rpmbuild_defines(self, topdir: str) -> list[str]:
        return ["--define", f"_topdir {topdir}"]

    def build_srpm(self, spec: str, sources: str) -> None:
        top = self.path("rpmbuild")
        self.run(["rpmbuild", "-bs", *self.rpmbuild_defines(top), "--define", f"_sourcedir {sources}", spec])
        srpms = glob.glob(os.path.join(top, "SRPMS", "*.src.rpm"))
        if len(srpms) != 1:
            raise PhaseFailed("rpmbuild made no source package")
        shutil.copy2(srpms[0], self.results)
        shutil.copy2(spec, self.results)
        self.say(f"Made {os.path.basename(srpms[0])}")

    def take_srpm(self, srpm: str) -> None:
        query = subprocess.run(
            ["rpm", "-qp", "--nosignature", "--qf", "%{SOURCERPM}|%{NAME}", srpm],
            capture_output=True,
            text=True,
            check=False,
        )
        if query.returncode != 0:
            self.log.write(query.stderr.encode())
            raise PhaseFailed("the file is not a readable RPM package")
        kind, _name = query.stdout.split("|", 1)
        if kind != "(none)":
            raise PhaseFailed("the file is a binary RPM, not a source RPM")
        top = self.path("rpmbuild")
        # Installing a source package unpacks its spec and sources under _topdir.
        self.run(["rpm", "-i", "--nosignature", *self.rpmbuild_defines(top), srpm])
        specs = glob.glob(os.path.join(top, "SPECS", "*.spec"))
        if len(specs) != 1:
            raise PhaseFailed("the source package holds no spec file")
        shutil.copy2(srpm, self.results)
        shutil.copy2(specs[0], self.results)

    # --- fetching sources ---------------------------------------------------------------

    def check_fetch(self, url: str) -> None:
        """Refuse `url` unless it is http(s) and every address its host has now is allowed."""
        policy = self.job.get("fetch") or {}
        try:
            parts = urllib.parse.urlsplit(url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise PhaseFailed(f"refused to fetch {url!r}: not a valid URL") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise PhaseFailed(f"refused to fetch {url!r}: only http and https URLs can be fetched")
        try:
            found = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
        except OSError:
            raise PhaseFailed(
                f"refused to fetch {url!r}: the host {parts.hostname} does not resolve"
            ) from None
        for *_rest, sockaddr in found:
            address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
            problem = address_problem(
                address,
                allow_local=bool(policy.get("allow_local")),
                allow_private=bool(policy.get("allow_private")),
            )
            if problem:
                raise PhaseFailed(f"refused to fetch {url!r}: {parts.hostname} is {problem} ({address})")

    def opener(self) -> urllib.request.OpenerDirector:
        """urllib that checks each redirect before following it (urllib alone would follow any)."""
        agent = self

        class CheckedRedirects(urllib.request.HTTPRedirectHandler):
            max_redirections = MAX_REDIRECTS

            def redirect_request(  # noqa: PLR0913 - urllib's signature
                self,
                req: urllib.request.Request,
                fp: Any,
                code: int,
                msg: str,
                headers: Any,
                newurl: str,
            ) -> urllib.request.Request | None:
                if len(getattr(req, "redirect_dict", {})) >= MAX_REDIRECTS:
                    raise PhaseFailed(f"refused to fetch {newurl!r}: more than {MAX_REDIRECTS} redirects")
                agent.check_fetch(newurl)
                agent.say(f"Redirected to {newurl}")
                return super().redirect_request(req, fp, code, msg, headers, newurl)

        return urllib.request.build_opener(CheckedRedirects)

    def git_url(self, url: str) -> str:
        """Where the repository at `url` really is: its redirects followed, each one checked."""
        self.check_fetch(url)
        probe = url.rstrip("/") + GIT_PROBE
        try:
            with self.opener().open(probe, timeout=60) as response:
                final = str(response.geturl())
        except urllib.error.HTTPError as exc:
            final = str(exc.geturl())  # git says what is wrong with it
        except OSError:
            return url  # unreachable now: git says so
        if final == probe:
            return url
        if not final.endswith(GIT_PROBE):
            raise PhaseFailed(f"refused to clone: the repository redirects to an unexpected URL {final!r}")
        return final[: -len(GIT_PROBE)]

    def download(self, url: str, target: str, limit: int) -> None:
        self.check_fetch(url)
        self.say(f"Downloading {url}")
        try:
            with self.opener().open(url, timeout=60) as response, open(target, "wb") as out:
                size = 0
                while chunk := response.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise PhaseFailed(f"the download is larger than {limit} bytes")
                    out.write(chunk)
        except OSError as exc:
            raise PhaseFailed(f"download failed: {exc}") from None
        self.say(f"Downloaded {size} bytes")

    def rpm_phase(self) -> None:
        srpm = self.path(self.job["srpm"])
        chroot = self.job["chroot"]
        if shutil.which("mock"):
            self.run(["mock", "-r", chroot, "--rebuild", srpm, "--resultdir", self.results])
            return
        self.say(f"mock is not installed here: building for {chroot} with rpmbuild --rebuild --nodeps")
        top = self.path("rpmbuild")
        self.run(["rpmbuild", "--rebuild", "--nodeps", *self.rpmbuild_defines(top), srpm])
        built = glob.glob(os.path.join(top, "RPMS", "*", "*.rpm"))
        if not built:
            raise PhaseFailed("rpmbuild made no package")
        for rpm in built:
            shutil.copy2(rpm, self.results)
        self.say("Built " + ", ".join(sorted(os.path.basename(r) for r in built)))


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "run":
        print(__doc__, file=sys.stderr)
        return 2
    return Agent(argv[2]).main()


if __name__ == "__main__":
    sys.exit(main(sys.argv))
