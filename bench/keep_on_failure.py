#!/usr/bin/env python3
"""Time from a build's failure to a working `ssh … true` on the builder kept for it (issue 13).

    DEBUG=1 COPRSSH_DATA_DIR=$(mktemp -d) .venv/bin/python bench/keep_on_failure.py --runs 10

The demo setup, as bench/ssh_ready.py runs it: Django with the database from the environment (a
SQLite file in COPRSSH_DATA_DIR by default), a local pool of sshd builders, rpmbuild, the OpenSSH
client, the agents reporting to the site served from this process; the task queue is played here,
oldest first (no broker polling delay).

Each run submits a build of a package whose %check fails, with "keep the builder for SSH if this
build fails" and a fresh key, and runs it. The failure is when the agent on the builder recorded
the build's end (its status.json, on this host's clock, as local builders share it); then the
service collects the phase, keeps its lease for SSH and deploys the key; the OpenSSH client runs
`true` with the pinned host key until it succeeds. Untimed: the builder is released and deleted.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from ssh_ready import (  # noqa: E402 - beside this script
    POOL,
    SPEC,
    USER,
    Worker,
    new_key,
    p95,
    retire,
    run,
    ssh_true,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs (default 10)")
    parser.add_argument("--warm", type=int, default=2, help="warm builders kept ready (default 2)")
    parser.add_argument("--max", type=int, default=4, help="builders alive at once (default 4)")
    parser.add_argument("--timeout", type=float, default=90.0, help="give up a run after this many seconds")
    parser.add_argument("--trace", action="store_true", help="print each task and how long it took")
    args = parser.parse_args()
    if args.runs < 1 or args.warm < 1 or args.max < 2 or args.warm > args.max:
        parser.error("--runs and --warm at least 1, --max at least 2, --warm at most --max")
    return args


def main() -> int:
    return run(parse_args(), bench)


def bench(args: argparse.Namespace, worker: Worker, root: Path, scratch: Path) -> int:
    import platform

    from django.contrib.auth import get_user_model
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.db import connection

    from builders import services as builders
    from builders.models import AuditEvent, Builder, Lease, Pool, QuotaOverride
    from builds.models import Build, BuildChroot, Chroot, Project, State
    from builds.services import create_project, submit_build
    from builds.sources import check_upload
    from builds.ssh_view import ssh_builder_of_phase
    from keys.parser import parse_keys

    arch = platform.machine()
    chroot = f"fedora-rawhide-{arch}"
    Chroot.objects.get_or_create(name=chroot, defaults={"os": "fedora", "version": "rawhide", "arch": arch})
    Pool.objects.exclude(name=POOL).filter(enabled=True).update(enabled=False)
    pool, _ = Pool.objects.update_or_create(
        name=POOL,
        defaults={
            "provider": Pool.Provider.LOCAL,
            "architectures": [arch],
            "max_builders": args.max,
            "warm_builders": args.warm,
            "provider_settings": {"root_dir": str(root)},
            "enabled": True,
        },
    )
    user, _ = get_user_model().objects.get_or_create(username=USER)
    # Each run's builder is released before the next: the policy's 2 slots are plenty, but a
    # scratch database may hold an override from another bench.
    QuotaOverride.objects.filter(user=user).delete()
    project = Project.objects.filter(owner=user, name="bench").first() or create_project(
        owner=user, name="bench", chroots=[chroot]
    )
    key_path, key_line = new_key(scratch)
    keys = parse_keys(key_line).keys
    retire(pool, worker, timeout=args.timeout)

    def warm() -> bool:
        ready = Builder.objects.filter(pool=pool, state=Builder.State.READY).count()
        return ready >= args.warm and not worker.tasks

    print(f"bench: warming the pool ({args.warm} builders)…", file=sys.stderr)
    builders.ensure_capacity()
    worker.run(warm, timeout=args.timeout, what="warming the pool")

    seconds: list[float] = []
    reported: list[float] = []
    kept_at: list[float] = []
    deployed_at: list[float] = []
    attempts: list[int] = []
    for number in range(1, args.runs + 1):
        upload = SimpleUploadedFile("bench-check-fails.spec", SPEC.encode())
        build = submit_build(
            project=project,
            submitter=user,
            chroots=[chroot],
            source=check_upload(upload),
            upload=upload,
            keep_for_ssh=keys,
        )
        phase = BuildChroot.objects.get(build=build)

        def kept(phase_id: int = phase.pk) -> bool:
            current = BuildChroot.objects.select_related("lease").get(pk=phase_id)
            lease = current.lease
            return (
                current.state == State.FAILED
                and lease is not None
                and lease.ssh
                and AuditEvent.objects.filter(lease=lease, action=AuditEvent.Action.KEYS_DEPLOYED).exists()
            ) or bool(current.not_kept_reason)

        worker.run(kept, timeout=args.timeout, what=f"run {number}: the failure and the kept builder")
        phase.refresh_from_db()
        if phase.not_kept_reason:
            print(f"bench: run {number}: {phase.not_kept_reason}", file=sys.stderr)
            return 1
        lease = Lease.objects.select_related("builder").get(pk=phase.lease_id)
        # The failure: when the agent recorded the build's end on the builder (local builders share our clock).
        failed_at = float(json.loads((Path(phase.remote_dir) / "status.json").read_text())["time"])
        events = {e.action: e.created_at.timestamp() for e in AuditEvent.objects.filter(lease=lease)}
        view = ssh_builder_of_phase(phase, viewer=user)
        known_hosts = scratch / f"known_hosts-{number}"
        key_type, blob = lease.builder.host_key.split()[:2]
        known_hosts.write_text(f"[{view.host}]:{view.port} {key_type} {blob}\n")
        tries = 1
        while not ssh_true(key_path, known_hosts, view.user, view.host, view.port):
            if time.time() - failed_at > args.timeout:
                print(f"bench: run {number}: ssh never succeeded", file=sys.stderr)
                return 1
            tries += 1
            time.sleep(0.02)
        done = time.time()
        seconds.append(done - failed_at)
        reported.append(phase.alive_at.timestamp() - failed_at)
        kept_at.append(events[AuditEvent.Action.KEPT_FOR_SSH] - failed_at)
        deployed_at.append(events[AuditEvent.Action.KEYS_DEPLOYED] - failed_at)
        attempts.append(tries)
        print(
            f"run {number}: {seconds[-1]:.2f} s (end reported at {reported[-1]:.2f} s, kept at {kept_at[-1]:.2f} s, "
            f"keys on the builder at {deployed_at[-1]:.2f} s, ssh true in {tries} attempt(s), {lease.builder.name})"
        )
        # Untimed: release the builder and let it be deleted; the pool warms up again.
        builders.release_lease(lease_id=lease.pk, via=builders.Via(user=user, source="cli"))
        worker.run(
            lambda builder_id=lease.builder_id: (
                Builder.objects.get(pk=builder_id).state == Builder.State.TERMINATED
            ),
            timeout=args.timeout,
            what=f"run {number}: the builder's deletion",
        )
        worker.run(warm, timeout=args.timeout, what="warming the pool")
        assert Build.objects.get(pk=build.pk).is_finished

    print(
        f"runs={len(seconds)} median={statistics.median(seconds):.2f} s p95={p95(seconds):.2f} s "
        f"min={min(seconds):.2f} s max={max(seconds):.2f} s"
    )
    print(
        f"notes: from the agent's recorded end to a working ssh; end reported to the service after median "
        f"{statistics.median(reported):.2f} s, kept after {statistics.median(kept_at):.2f} s, keys on the builder "
        f"after {statistics.median(deployed_at):.2f} s; ssh attempts per run {min(attempts)}-{max(attempts)}; "
        f"warm pool {args.warm} (max {args.max}); database {connection.vendor}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
