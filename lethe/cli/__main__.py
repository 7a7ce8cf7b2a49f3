from lethe.cli.main import app

app()
