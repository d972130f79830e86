from django.urls import path

from builds.api import agent, builds, projects, resubmit, ssh

urlpatterns = [
    path("projects/", projects.ProjectListView.as_view(), name="api-projects"),
    path("projects/<str:owner>/<str:name>/", projects.ProjectDetailView.as_view(), name="api-project-detail"),
    path("builds/", builds.BuildListView.as_view(), name="api-builds"),
    path("builds/<int:build_id>/", builds.BuildDetailView.as_view(), name="api-build-detail"),
    path("builds/<int:build_id>/cancel/", builds.BuildCancelView.as_view(), name="api-build-cancel"),
    path("builds/<int:build_id>/resubmit/", resubmit.BuildResubmitView.as_view(), name="api-build-resubmit"),
    path("ssh-builders/", ssh.SshBuilderListView.as_view(), name="api-ssh-builders"),
    path("ssh-builders/<int:lease_id>/", ssh.SshBuilderDetailView.as_view(), name="api-ssh-builder-detail"),
    path(
        "ssh-builders/<int:lease_id>/prolong/",
        ssh.SshBuilderProlongView.as_view(),
        name="api-ssh-builder-prolong",
    ),
    path(
        "ssh-builders/<int:lease_id>/release/",
        ssh.SshBuilderReleaseView.as_view(),
        name="api-ssh-builder-release",
    ),
    path("quota/", ssh.QuotaView.as_view(), name="api-quota"),
    path("agent/<str:kind>/<int:phase_id>/log/", agent.AgentLogView.as_view(), name="api-agent-log"),
    path("agent/<str:kind>/<int:phase_id>/end/", agent.AgentEndView.as_view(), name="api-agent-end"),
]
