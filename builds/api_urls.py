from django.urls import path

from builds.api.builds import BuildCancelView, BuildDetailView, BuildListView
from builds.api.projects import ProjectDetailView, ProjectListView
from builds.api.resubmit import BuildResubmitView
from builds.api.ssh import (
    QuotaView,
    SshBuilderDetailView,
    SshBuilderListView,
    SshBuilderProlongView,
    SshBuilderReleaseView,
)

urlpatterns = [
    path("projects/", ProjectListView.as_view(), name="api-projects"),
    path("projects/<str:owner>/<str:name>/", ProjectDetailView.as_view(), name="api-project-detail"),
    path("builds/", BuildListView.as_view(), name="api-builds"),
    path("builds/<int:build_id>/", BuildDetailView.as_view(), name="api-build-detail"),
    path("builds/<int:build_id>/cancel/", BuildCancelView.as_view(), name="api-build-cancel"),
    path("builds/<int:build_id>/resubmit/", BuildResubmitView.as_view(), name="api-build-resubmit"),
    path("ssh-builders/", SshBuilderListView.as_view(), name="api-ssh-builders"),
    path("ssh-builders/<int:lease_id>/", SshBuilderDetailView.as_view(), name="api-ssh-builder-detail"),
    path(
        "ssh-builders/<int:lease_id>/prolong/",
        SshBuilderProlongView.as_view(),
        name="api-ssh-builder-prolong",
    ),
    path(
        "ssh-builders/<int:lease_id>/release/",
        SshBuilderReleaseView.as_view(),
        name="api-ssh-builder-release",
    ),
    path("quota/", QuotaView.as_view(), name="api-quota"),
]
