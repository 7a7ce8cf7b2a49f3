"""The `lethe` command: operator commands (`main`) and the HTTP client's commands
(`client`). `python -m lethe.cli` runs it too."""
