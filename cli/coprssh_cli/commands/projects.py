"""`create-project` and `list-projects`."""

from __future__ import annotations

from typing import Any

from coprssh_cli.context import EXIT_OK, AddCommand, Context, UsageError, say
from coprssh_cli.output import chroot_names, project_name, table


def cmd_create_project(ctx: Context) -> int:
    """Create a project of the caller."""
    name = ctx.args.name
    if "/" in name:
        raise UsageError("give a plain project name: projects are created under your own account")
    body = {"name": name, "chroots": ctx.args.chroots, "description": ctx.args.description}
    project = ctx.client.post("projects/", body)

    def human() -> None:
        chroots = ", ".join(chroot_names(project.get("chroots")))
        say(f"Created project {project_name(project)} ({chroots}).")

    ctx.show(project, human)
    return EXIT_OK


def cmd_list_projects(ctx: Context) -> int:
    """Projects, by owner and name."""
    params = {"owner": ctx.args.owner} if ctx.args.owner else {}
    projects = list(ctx.client.pages("projects/", limit=ctx.args.limit or None, **params))

    def human() -> None:
        rows = [
            [project_name(p), ", ".join(chroot_names(p.get("chroots"))), first_line(p.get("description"))]
            for p in projects
        ]
        if rows:
            table(["PROJECT", "CHROOTS", "DESCRIPTION"], rows)
        else:
            say("No projects.")

    ctx.show(projects, human)
    return EXIT_OK


def first_line(text: Any, width: int = 60) -> str:
    line = str(text or "").strip().split("\n", 1)[0]
    return line if len(line) <= width else line[: width - 1] + "…"


def add_commands(command: AddCommand) -> None:
    create = command("create-project", cmd_create_project, "create a project of yours")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--chroot",
        dest="chroots",
        action="append",
        required=True,
        metavar="CHROOT",
        help="a chroot to build for, e.g. fedora-rawhide-x86_64 (repeat for more)",
    )
    create.add_argument("--description", default="", help="what the project is for")

    projects = command("list-projects", cmd_list_projects, "list projects")
    projects.add_argument("--owner", help="only this user's projects")
    projects.add_argument("--limit", type=int, default=100, help="at most this many (0: all; default 100)")
