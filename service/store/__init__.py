"""The service's database: engine and sessions, models, migrations, the inbox, leases."""
