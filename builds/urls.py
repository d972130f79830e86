urlpatterns: list = []  # web pages of builds: projects, new build, build page
