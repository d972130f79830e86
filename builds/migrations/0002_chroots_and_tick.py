"""Seed the chroot list and the builds tick (every minute); running it again changes nothing."""

from django.db import migrations

RELEASES = [
    ("fedora", "rawhide"),
    ("fedora", "43"),
    ("fedora", "42"),
    ("epel", "10"),
    ("epel", "9"),
]
ARCHES = ["x86_64", "aarch64", "ppc64le", "s390x"]


def seed(apps, schema_editor):
    Chroot = apps.get_model("builds", "Chroot")
    for os_name, version in RELEASES:
        for arch in ARCHES:
            Chroot.objects.get_or_create(
                name=f"{os_name}-{version}-{arch}", defaults={"os": os_name, "version": version, "arch": arch}
            )
    apps.get_model("django_q", "Schedule").objects.update_or_create(
        name="coprssh-builds-tick",
        defaults={"func": "builds.tasks.tick", "schedule_type": "I", "minutes": 1, "repeats": -1},
    )


def unseed(apps, schema_editor):
    apps.get_model("django_q", "Schedule").objects.filter(name="coprssh-builds-tick").delete()


class Migration(migrations.Migration):
    dependencies = [
        ("builds", "0001_models"),
        ("django_q", "0019_alter_task_options_alter_ormq_key_alter_ormq_lock_and_more"),
    ]
    operations = [migrations.RunPython(seed, unseed)]
