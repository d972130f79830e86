"""API v1 of builds: projects, builds and their resubmission, the caller's SSH builders and quota.

Reading projects and builds is public, as in Copr: anyone may list them and follow the links
to their logs and results. Writing needs a token or a session, and only a project's owner
(or an admin) may build in it; the services check that again. A resubmission given SSH keys
runs on SSH builders, which `ssh` serves to their owner only.
"""
