urlpatterns: list = []  # API v1: projects and builds
