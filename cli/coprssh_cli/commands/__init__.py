"""The commands of `coprssh`, a module per group; each module's `add_commands` registers its own."""
