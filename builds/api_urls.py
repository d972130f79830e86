from django.urls import path

from builds import api, api_agent, api_ssh

urlpatterns = [
    path("projects/", api.ProjectListView.as_view(), name="api-projects"),
    path("projects/<str:owner>/<str:name>/", api.ProjectDetailView.as_view(), name="api-project-detail"),
    path("builds/", api.BuildListView.as_view(), name="api-builds"),
    path("builds/<int:build_id>/", api.BuildDetailView.as_view(), name="api-build-detail"),
    path("builds/<int:build_id>/cancel/", api.BuildCancelView.as_view(), name="api-build-cancel"),
    path("builds/<int:build_id>/resubmit/", api.BuildResubmitView.as_view(), name="api-build-resubmit"),
    path("ssh-builders/", api_ssh.SshBuilderListView.as_view(), name="api-ssh-builders"),
    path(
        "ssh-builders/<int:lease_id>/", api_ssh.SshBuilderDetailView.as_view(), name="api-ssh-builder-detail"
    ),
    path(
        "ssh-builders/<int:lease_id>/prolong/",
        api_ssh.SshBuilderProlongView.as_view(),
        name="api-ssh-builder-prolong",
    ),
    path(
        "ssh-builders/<int:lease_id>/release/",
        api_ssh.SshBuilderReleaseView.as_view(),
        name="api-ssh-builder-release",
    ),
    path("quota/", api_ssh.QuotaView.as_view(), name="api-quota"),
    path("agent/<str:kind>/<int:phase_id>/log/", api_agent.AgentLogView.as_view(), name="api-agent-log"),
    path("agent/<str:kind>/<int:phase_id>/end/", api_agent.AgentEndView.as_view(), name="api-agent-end"),
]
