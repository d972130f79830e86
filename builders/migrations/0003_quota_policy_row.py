"""The quota policy is a single row; create it with the documented defaults."""

from datetime import timedelta

from django.db import migrations


def create_policy(apps, schema_editor):
    apps.get_model("builders", "QuotaPolicy").objects.get_or_create(
        pk=1,
        defaults={
            "max_ssh_builders": 2,
            "default_lifetime": timedelta(hours=1),
            "max_lifetime": timedelta(hours=48),
            "warning_before": timedelta(minutes=10),
        },
    )


class Migration(migrations.Migration):
    dependencies = [("builders", "0002_models")]
    operations = [migrations.RunPython(create_policy, migrations.RunPython.noop)]
