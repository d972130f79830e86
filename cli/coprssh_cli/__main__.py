"""`python -m coprssh_cli`: the same as the `coprssh` command."""

from coprssh_cli.main import main

raise SystemExit(main())
