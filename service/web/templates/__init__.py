"""HTML templates of the service pages (a package so that packaging ships them)."""
