"""Web pages of builds: projects, new build, build page, SSH builders (raw logs and results: file_urls)."""

from django.urls import path

from builds import views

urlpatterns = [
    path("projects/", views.project_list, name="project-list"),
    path("projects/new/", views.project_new, name="project-new"),
    path("projects/<str:owner>/<str:name>/", views.project_detail, name="project-detail"),
    path("projects/<str:owner>/<str:name>/build/", views.build_new, name="build-new"),
    path("builds/<int:build_id>/", views.build_detail, name="build-detail"),
    path("builds/<int:build_id>/state.json", views.build_state, name="build-state"),
    path("builds/<int:build_id>/cancel/", views.build_cancel, name="build-cancel"),
    path("builds/<int:build_id>/resubmit/", views.build_resubmit, name="build-resubmit"),
    path("builds/<int:build_id>/resubmit-ssh/", views.build_resubmit_ssh, name="build-resubmit-ssh"),
    path("ssh-builders/<int:lease_id>/prolong/", views.ssh_prolong, name="ssh-prolong"),
    path("ssh-builders/<int:lease_id>/release/", views.ssh_release, name="ssh-release"),
]
