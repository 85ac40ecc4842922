from service.cli.main import entry

entry()
